"""An alias is reserved by the image rule of the model it is sent as (issue 13): the provider
counts images by the model it serves, not by the `price:` entry the operator priced the alias
as. Claude Opus 4.7 lists Opus 4.6's token prices, so `claude-opus-4-7: {price:
claude-opus-4-6}` is a natural alias, but Opus 4.7 bills up to 4,784 tokens an image where
Opus 4.6 bills 1,600; gpt-4o-mini bills 5667/170 times gpt-4o's tiles. The alias's images are
reserved at the served model's published factor (a factor written on the entry too, if it is
lower), and `cycles-proxy check` says so.

Real SDKs on both stores; the fake provider bills images by the model the request names (the
name sent upstream) and is the oracle: billed <= charged <= reserved, its bill priced at the
entry the alias is priced as."""

from __future__ import annotations

import base64
import dataclasses
import struct
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from prices_support import HEADERS, POLICY, billed_cost, measured_call

from proxy.policy import describe, load_policy
from proxy.policy.runtime import Policy
from proxy.testing import fake_claude_tokens
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

LATENCY = 0.15
OPUS_47 = "claude-opus-4-7: {input: 5"
ANTHROPIC = "auth: x-api-key}"
OPENAI = "models: {chatgpt-4o-latest: {price: gpt-4o}}"
CLAUDE_IMAGE = {"type": "image", "source": {"type": "url", "url": "https://x.test/screen.png"}}
"""An image the fake cannot measure: the most the model bills for one."""
IMAGES = 10


def edited(tmp_path: Path, *changes: tuple[str, str]) -> Policy:
    """tests/prices_support.py's policy ($50) with each (old, new) applied; `old` occurs once."""
    text = POLICY.replace("{limit}", "50")
    for old, new in changes:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


def opus_aliased(tmp_path: Path, factor: str) -> Policy:
    """Opus 4.7's entry renamed Opus 4.6 (same prices), `factor` written on it, and
    claude-opus-4-7 declared an alias priced as it."""
    written = "" if not factor else f", image_token_factor: {factor}"
    return edited(
        tmp_path,
        (OPUS_47, "claude-opus-4-6: {input: 5"),
        ("output: 25,\n", f"output: 25{written},\n"),
        (ANTHROPIC, "auth: x-api-key, models: {claude-opus-4-7: {price: claude-opus-4-6}}}"),
    )


async def compare(stack: Stack, model: str = "claude-opus-4-7") -> None:
    async with anthropic.AsyncAnthropic(
        base_url=stack.url, api_key="unused", default_headers=HEADERS, max_retries=0
    ) as sdk:
        await sdk.messages.create(
            model=model,
            max_tokens=20,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Compare."}, *[CLAUDE_IMAGE] * IMAGES],
                }
            ],
        )


@pytest.mark.parametrize("factor", ["", "1"], ids=["published", "written-lower"])
async def test_an_opus_4_7_alias_priced_as_opus_4_6_reserves_opus_4_7_images(
    tmp_path: Path, store_url: str, factor: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(opus_aliased(tmp_path, factor), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(stack.ledger, compare(stack))
    [billed] = fake.billed
    assert billed.model == "claude-opus-4-7" and billed.prompt_tokens > IMAGES * 4_784, billed
    assert billed_cost(billed) <= charged <= reserved, (billed_cost(billed), charged, reserved)


NEW = "claude-opus-5"
"""A Claude model released after the proxy's table of published image rules."""


def new_aliased(tmp_path: Path, factor: str) -> Policy:
    """claude-opus-5 declared an alias priced as Opus 4.6 (Opus 4.7's entry renamed), `factor`
    written on the entry."""
    written = "" if not factor else f", image_token_factor: {factor}"
    return edited(
        tmp_path,
        (OPUS_47, "claude-opus-4-6: {input: 5"),
        ("output: 25,\n", f"output: 25{written},\n"),
        (ANTHROPIC, f"auth: x-api-key, models: {{{NEW}: {{price: claude-opus-4-6}}}}}}"),
    )


async def test_an_alias_sent_as_a_model_with_no_published_image_rule_refuses_its_images(
    tmp_path: Path, store_url: str
) -> None:
    """Opus 4.6's 1,600 tokens an image is Opus 4.6's rule, not the new model's: without a
    factor written on the entry, the images are refused before anything is reserved or sent."""
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(new_aliased(tmp_path, ""), store=store_url, fake=fake) as stack:
        with pytest.raises(anthropic.BadRequestError) as raised:
            await compare(stack, NEW)
        balances = await stack.ledger.balances("alpha")
    body: Any = raised.value.body
    error = body["error"]
    assert error["code"] == "unpriced_feature" and "image_token_factor" in error["message"], body
    assert "models.claude-opus-4-6" in error["message"], body
    assert fake.requests == [] and fake.billed == []
    assert all(r.spent == r.reserved == 0 for r in balances)


async def test_an_alias_sent_as_a_model_with_no_published_image_rule_takes_the_written_factor(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator writes the new model's most an image (3 × 1,600 ≥ 4,784): the fake bills
    it as a high-resolution model, and the reservation covers that."""
    monkeypatch.setattr(fake_claude_tokens, "HIGH_RES_MODELS", ("claude-opus-4-7", NEW))
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(new_aliased(tmp_path, "3"), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(stack.ledger, compare(stack, NEW))
    [billed] = fake.billed
    assert billed.model == NEW and billed.prompt_tokens > IMAGES * 4_784, billed
    cost = billed_cost(dataclasses.replace(billed, model="claude-opus-4-7"))  # Opus 4.6's prices
    assert cost <= charged <= reserved, (cost, charged, reserved)


def png(width: int, height: int) -> str:
    """The header of a PNG of that size, as a data URL: enough for its size to be read."""
    ihdr = struct.pack(">II", width, height) + b"\x08\x06\x00\x00\x00"
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"
    return "data:image/png;base64," + base64.b64encode(head).decode()


MINI = "gpt-4o-mini-2024-07-18"
"""A dated snapshot of gpt-4o-mini: the published factor of the model it extends applies."""


def mini_aliased(tmp_path: Path) -> Policy:
    """`vision`, sent as a gpt-4o-mini snapshot but priced as gpt-4o (factor 1)."""
    return edited(tmp_path, (OPENAI, f"models: {{vision: {{send: {MINI}, price: gpt-4o}}}}"))


async def describe_image(stack: Stack) -> None:
    async with openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
    ) as sdk:
        await sdk.chat.completions.create(
            model="vision",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": png(1024, 1024)}},
                    ],
                }
            ],
            max_completion_tokens=20,
        )


async def test_an_alias_sent_as_gpt_4o_mini_reserves_its_tiles_though_priced_as_gpt_4o(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(mini_aliased(tmp_path), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(stack.ledger, describe_image(stack))
    [billed] = fake.billed
    # 4 tiles at gpt-4o-mini's 2833 + 5667 a tile, where gpt-4o's rule counts 765.
    assert billed.model == MINI and billed.prompt_tokens > 25_000, billed
    cost = billed_cost(dataclasses.replace(billed, model="gpt-4o"))
    assert cost <= charged <= reserved, (cost, charged, reserved)


def test_check_shows_the_factor_an_alias_is_reserved_at(tmp_path: Path) -> None:
    lines = describe(opus_aliased(tmp_path, "1")).splitlines()
    [line] = [line for line in lines if line.strip().startswith("claude-opus-4-7 →")]
    assert "priced as claude-opus-4-6; image tokens ×2.99" in line, line
    assert "published for claude-opus-4-7" in line, line
    [line] = [line for line in describe(mini_aliased(tmp_path)).splitlines() if "vision →" in line]
    assert f"sent as {MINI}, priced as gpt-4o; image tokens ×33.34" in line, line
