"""An image is billed as an image whatever it is called and wherever it sits (issue 13): a
content part of the other OpenAI API's type (`input_image` in a chat message, `image_url` in a
Responses message) is refused with 400 `unpriced_feature` naming where it is, and nothing is
reserved or sent; with `request_fields: forward` it passes and is reserved as an image. In a
tool's output, where the parts are counted with the item, either type is an image; a
computer-use screenshot is one full image whatever its object says (there is no `detail` on a
screenshot for a `low` to lower, nor a `type` the provider needs to bill it as one).

Each call runs with the real SDK on both stores, and the fake provider, which bills images by
the published tile rule, is the oracle: billed <= charged <= reserved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from prices_support import HEADERS, billed_cost, measured_call, prices_policy, tenant_row

from proxy.policy import load_policy
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

LATENCY = 0.15
CHART = "https://x.test/chart.png"
"""An image the fake cannot measure: gpt-4o-mini bills it 2833 + 8 × 5667 = 48,169 tokens."""
IMAGE_TOKENS = 48_169
ASK = {"type": "text", "text": "What does the chart show?"}
ASK_RESPONSES = {"type": "input_text", "text": "What does the chart show?"}


def openai_client(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
    )


async def chat_with(stack: Stack, part: dict[str, Any]) -> None:
    async with openai_client(stack) as sdk:
        await sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": [ASK, part]}],  # type: ignore[list-item]
            max_completion_tokens=20,
        )


async def respond_with(stack: Stack, given: list[Any]) -> None:
    async with openai_client(stack) as sdk:
        await sdk.responses.create(model="gpt-4o-mini", input=given, max_output_tokens=20)


async def claude_with(stack: Stack, block: dict[str, Any]) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=stack.url, api_key="unused", default_headers=HEADERS, max_retries=0
    ) as sdk:
        await sdk.messages.create(
            model="claude-sonnet-4-5",
            messages=[{"role": "user", "content": [ASK, block]}],  # type: ignore[list-item]
            max_tokens=20,
        )


def message_of(part: dict[str, Any]) -> list[Any]:
    return [{"role": "user", "content": [ASK_RESPONSES, part]}]


INPUT_IMAGE = {"type": "input_image", "image_url": CHART, "detail": "high"}
IMAGE_URL = {"type": "image_url", "image_url": {"url": CHART}}
FOREIGN: dict[str, tuple[Any, str]] = {
    "chat-input_image": (lambda stack: chat_with(stack, INPUT_IMAGE), "messages[0].content[1]"),
    "responses-image_url": (
        lambda stack: respond_with(stack, message_of(IMAGE_URL)),
        "input[0].content[1]",
    ),
    "messages-image_url": (lambda stack: claude_with(stack, IMAGE_URL), "messages[0].content[1]"),
}
"""A call carrying a part of another API's type, and where the proxy names it."""


@pytest.mark.parametrize("case", FOREIGN)
async def test_a_part_of_another_api_s_type_is_refused_naming_where_it_is(
    tmp_path: Path, store_url: str, case: str
) -> None:
    send, where = FOREIGN[case]
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        with pytest.raises((openai.BadRequestError, anthropic.BadRequestError)) as raised:
            await send(stack)
        row = await tenant_row(stack.ledger)
    body: Any = raised.value.body
    error = body.get("error", body)
    assert error["code"] == "unpriced_feature" and where in error["message"], body
    assert error.get("param", where) == where, body  # Anthropic's errors have no param
    assert "request_fields: forward" in error["message"], body
    assert fake.requests == [] and fake.billed == []
    assert (row.spent, row.reserved) == (0, 0)


@pytest.mark.parametrize("case", ["chat-input_image", "responses-image_url"])
async def test_forwarded_it_is_reserved_as_the_image_it_is(
    tmp_path: Path, store_url: str, case: str
) -> None:
    prices_policy(tmp_path)
    path = tmp_path / "policy.yaml"
    path.write_text(path.read_text() + "request_fields: forward\n")
    send, _ = FOREIGN[case]
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(load_policy(path), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(stack.ledger, send(stack))
    [billed] = fake.billed
    assert billed.prompt_tokens > IMAGE_TOKENS, billed
    assert billed_cost(billed) <= charged <= reserved, (billed, charged, reserved)


CALL = {"type": "function_call", "call_id": "call_1", "name": "open_chart", "arguments": "{}"}
CLICK = {
    "type": "computer_call",
    "id": "cu_1",
    "call_id": "call_3",
    "action": {"type": "screenshot"},
    "pending_safety_checks": [],
    "status": "completed",
}


def tool_output(part: dict[str, Any]) -> list[Any]:
    return [CALL, {"type": "function_call_output", "call_id": "call_1", "output": [part]}]


def screenshot(output: dict[str, Any]) -> list[Any]:
    return [CLICK, {"type": "computer_call_output", "call_id": "call_3", "output": output}]


ITEMS: dict[str, list[Any]] = {
    "function-output-image_url": tool_output(IMAGE_URL),
    "function-output-image_url-string": tool_output({"type": "image_url", "image_url": CHART}),
    "screenshot-detail-low": screenshot(
        {"type": "computer_screenshot", "image_url": CHART, "detail": "low"}
    ),
    "screenshot-without-type": screenshot({"image_url": CHART}),
    "screenshot-as-input_image-low": screenshot(
        {"type": "input_image", "image_url": CHART, "detail": "low"}
    ),
}
"""Images the item counts as images: in strict mode, for the parts inside an item are counted
with it and not checked one by one."""


@pytest.mark.parametrize("case", ITEMS)
async def test_an_image_in_an_item_is_reserved_as_one_whatever_it_says(
    tmp_path: Path, store_url: str, case: str
) -> None:
    given = [{"role": "user", "content": "What does it show?"}, *ITEMS[case]]
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(stack.ledger, respond_with(stack, given))
    [billed] = fake.billed
    assert billed.prompt_tokens > IMAGE_TOKENS, billed
    assert billed_cost(billed) <= charged <= reserved, (billed, charged, reserved)
