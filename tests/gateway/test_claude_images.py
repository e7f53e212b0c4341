"""Claude's images are reserved as what the model bills for them (issue 13): 1,600 tokens an
image up to Claude 4.6, times the model's `image_token_factor` on later ones (Claude Opus 4.7
reads images up to 2576 px on the long edge: up to 4,784 tokens; the factor is published for it,
policy/features.py), never scaled by the tokenizer factor meant for text. A Claude model whose
image rule the proxy does not know refuses images with 400 `unpriced_feature` naming where the
image is, before anything is reserved or sent, unless the policy gives its factor.

With the real anthropic SDK on both stores; the fake provider bills Claude's images by the
published rules (testing/fake_claude_tokens.py) and is the oracle: billed <= charged <= reserved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import pytest
from prices_support import HEADERS, POLICY, billed_cost, measured_call, prices_policy, tenant_row

from proxy.policy import load_policy
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

LATENCY = 0.15
IMAGE = {"type": "image", "source": {"type": "url", "url": "https://x.test/screen.png"}}
"""An image the fake cannot measure: the most the model bills for one."""
IMAGES = 10


async def compare(stack: Stack, model: str, images: list[Any]) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=stack.url, api_key="unused", default_headers=HEADERS, max_retries=0
    ) as sdk:
        await sdk.messages.create(
            model=model,
            max_tokens=20,
            messages=[{"role": "user", "content": [{"type": "text", "text": "Compare."}, *images]}],
        )


IN_A_RESULT = {
    "type": "tool_result",
    "tool_use_id": "toolu_1",
    "content": [{"type": "text", "text": "The screen:"}, IMAGE],
}


@pytest.mark.parametrize("where", ["blocks", "tool-result"])
async def test_opus_4_7_images_are_reserved_at_its_larger_rule(
    tmp_path: Path, store_url: str, where: str
) -> None:
    images = [IMAGE] * IMAGES if where == "blocks" else [IN_A_RESULT] * IMAGES
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(
            stack.ledger, compare(stack, "claude-opus-4-7", images)
        )
    [billed] = fake.billed
    assert billed.prompt_tokens > IMAGES * 4_784, billed  # each image at Opus 4.7's most
    assert billed_cost(billed) <= charged <= reserved, (billed_cost(billed), charged, reserved)


async def test_a_claude_model_without_a_known_image_rule_refuses_images(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        with pytest.raises(anthropic.BadRequestError) as raised:
            await compare(stack, "claude-haiku-4", [IMAGE])
        row = await tenant_row(stack.ledger)
    error: Any = raised.value.body
    error = error.get("error", error)
    assert error["type"] == "invalid_request_error", error
    assert "messages[0].content[1]" in error["message"], error
    assert "image_token_factor" in error["message"], error
    assert fake.requests == [] and fake.billed == []
    assert (row.spent, row.reserved) == (0, 0)


async def test_the_policy_s_image_factor_is_reserved(tmp_path: Path, store_url: str) -> None:
    """claude-haiku-4 (the fake bills it Claude's 1,600 an image) with a factor of 1."""
    text = POLICY.replace("{limit}", "50").replace(
        "output: 5,\n                   tokenizer_factor: 1.2}",
        "output: 5,\n                   tokenizer_factor: 1.2, image_token_factor: 1}",
    )
    assert "image_token_factor: 1}" in text
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(load_policy(path), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(
            stack.ledger, compare(stack, "claude-haiku-4", [IMAGE] * IMAGES)
        )
    [billed] = fake.billed
    assert billed.prompt_tokens > IMAGES * 1_600, billed
    assert billed_cost(billed) <= charged <= reserved, (billed_cost(billed), charged, reserved)
