"""An image is reserved by gpt-4o's tile rule times the model's `image_token_factor`, which
defaults to the rule OpenAI publishes for the model (gpt-4o-mini bills 2833 + 5667 a tile, 33.3
times gpt-4o's 85 + 170); a model with no published tile rule and no factor in the policy bills
images by a rule the proxy does not know, so an image sent to it is refused with 400
`unpriced_feature` naming the field, and nothing is reserved or sent.

The fake provider bills images by the published rules (testing/fake_tokens.py); the expected
amounts are its bill priced by tests/prices_support.py, whose gpt-4o-mini writes no factor, as
the README's quick-start policy did not."""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import openai
import pytest
from prices_support import (
    HEADERS,
    POLICY,
    PRICES,
    Prices,
    billed_cost,
    measured_call,
    prices_policy,
)

from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

LATENCY = 0.15


def png(width: int, height: int) -> str:
    """The header of a PNG of that size, as a data URL: enough for its size to be read."""
    ihdr = struct.pack(">II", width, height) + b"\x08\x06\x00\x00\x00"
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"
    return "data:image/png;base64," + base64.b64encode(head).decode()


IMAGE = png(1024, 1024)
"""4 tiles: gpt-4o-mini bills 2833 + 4 × 5667 = 25,501 tokens for it, gpt-4o 765."""


def client(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
    )


async def chat_with_image(stack: Stack, model: str, stream: bool) -> None:
    async with client(stack) as sdk:
        answer = await sdk.chat.completions.create(
            model=model,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": IMAGE}},
                    ],
                }
            ],
            max_completion_tokens=20,
            stream=stream,  # type: ignore[call-overload]
        )
        if stream:
            _ = [chunk async for chunk in answer]  # type: ignore[union-attr]


async def responses_with_image(stack: Stack, model: str) -> None:
    async with client(stack) as sdk:
        await sdk.responses.create(
            model=model,
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is in this picture?"},
                        {"type": "input_image", "image_url": IMAGE, "detail": "high"},
                    ],
                }
            ],
            max_output_tokens=20,
        )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_an_image_on_gpt_4o_mini_is_reserved_at_its_published_rule_without_a_factor(
    tmp_path: Path, store_url: str, stream: bool
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(
            stack.ledger, chat_with_image(stack, "gpt-4o-mini", stream)
        )
    [billed] = fake.billed
    assert billed.prompt_tokens > 25_000, billed
    assert billed_cost(billed) <= charged <= reserved, (billed, charged, reserved)


MINI_41 = "  gpt-4.1-mini: {input: 0.40, cached_input: 0.10, output: 1.60}\n"
"""A model priced per 32-px patch, whose image rule the proxy does not know."""


def policy_with(tmp_path: Path, models: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace("{limit}", "50").replace("models:\n", "models:\n" + models, 1))
    return load_policy(path)


SENDS: dict[str, Any] = {
    "chat": (lambda stack: chat_with_image(stack, "gpt-4.1-mini", False), "messages[0].content[1]"),
    "responses": (lambda stack: responses_with_image(stack, "gpt-4.1-mini"), "input[0].content[1]"),
}


@pytest.mark.parametrize("api", SENDS)
async def test_an_image_on_a_model_without_an_image_rule_is_refused_and_changes_nothing(
    tmp_path: Path, store_url: str, api: str
) -> None:
    send, where = SENDS[api]
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(policy_with(tmp_path, MINI_41), store=store_url, fake=fake) as stack:
        with pytest.raises(openai.BadRequestError) as raised:
            await send(stack)
        balances = await stack.ledger.balances("alpha")
    error: Any = raised.value.body
    assert error["code"] == "unpriced_feature" and error["param"] == where, error
    assert "image_token_factor" in error["message"] and "gpt-4.1-mini" in error["message"]
    assert fake.requests == [] and fake.billed == []
    assert all(r.spent == r.reserved == 0 for r in balances)


@pytest.mark.parametrize("api", SENDS)
async def test_an_image_factor_in_the_policy_lets_it_through_within_its_reservation(
    tmp_path: Path, store_url: str, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake bills gpt-4.1-mini's images by gpt-4o's rule: a factor of 1 covers them."""
    monkeypatch.setitem(PRICES, "gpt-4.1-mini", Prices("0.40", "0.10", "0.50", "1.60"))
    send, _ = SENDS[api]
    models = MINI_41.replace("output: 1.60}", "output: 1.60, image_token_factor: 1}")
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(policy_with(tmp_path, models), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(stack.ledger, send(stack))
    [billed] = fake.billed
    assert billed.prompt_tokens > 765, billed
    assert billed_cost(billed) <= charged <= reserved, (billed, charged, reserved)
