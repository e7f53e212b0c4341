"""An image's `detail` must be one the 512-px tile rule prices: low, high or auto (issue 13).
`original` (in the openai SDK's ImageDetail) sends the image at its own resolution, which the
rule does not bound, so wherever an image sits, on both OpenAI APIs (a message part, a function's
output, a screenshot, a chat part's nested `image_url`), any other detail is refused with 400
`unpriced_feature` naming where it is, and nothing is reserved or sent. A missing detail is auto.

Each call runs with the real openai SDK on both stores; the fake provider, which bills images by
the published tile rule, is the oracle of the one that passes: billed <= charged <= reserved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from prices_support import HEADERS, billed_cost, measured_call, prices_policy, tenant_row

from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

CHART = "https://x.test/6000x6000.png"
ASK = {"type": "input_text", "text": "What does the chart show?"}
CALL = {"type": "function_call", "call_id": "c1", "name": "shot", "arguments": "{}"}
CLICK = {
    "type": "computer_call",
    "id": "cu_1",
    "call_id": "c2",
    "action": {"type": "screenshot"},
    "pending_safety_checks": [],
    "status": "completed",
}


def input_image(detail: object) -> dict[str, Any]:
    return {"type": "input_image", "image_url": CHART, "detail": detail}


def function_output(part: dict[str, Any]) -> list[Any]:
    output = {"type": "function_call_output", "call_id": "c1", "output": [part]}
    return [{"role": "user", "content": "?"}, CALL, output]


def responses(given: list[Any]) -> Any:
    async def send(sdk: openai.AsyncOpenAI) -> Any:
        return await sdk.responses.create(model="gpt-5", input=given, max_output_tokens=20)

    return send


def chat(part: dict[str, Any]) -> Any:
    async def send(sdk: openai.AsyncOpenAI) -> Any:
        return await sdk.chat.completions.create(
            model="gpt-5",
            messages=[{"role": "user", "content": [{"type": "text", "text": "?"}, part]}],
            max_completion_tokens=20,
        )

    return send


REFUSED: dict[str, tuple[Any, str]] = {
    "responses-message": (
        responses([{"role": "user", "content": [ASK, input_image("original")]}]),
        "input[0].content[1].detail",
    ),
    "responses-function-output": (
        responses(function_output(input_image("original"))),
        "input[2].output[0].detail",
    ),
    "responses-function-output-image_url": (
        responses(
            function_output({"type": "image_url", "image_url": {"url": CHART, "detail": "max"}})
        ),
        "input[2].output[0].image_url.detail",
    ),
    "responses-screenshot": (
        responses(
            [CLICK, {"type": "computer_call_output", "call_id": "c2", "output": input_image(7)}]
        ),
        "input[1].output.detail",
    ),
    "chat-image_url": (
        chat({"type": "image_url", "image_url": {"url": CHART, "detail": "original"}}),
        "messages[0].content[1].image_url.detail",
    ),
}
"""A call sending an image with a detail the tile rule does not price, and where it is."""


async def call(stack: Stack, send: Any) -> Any:
    async with openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
    ) as sdk:
        return await send(sdk)


@pytest.mark.parametrize("case", REFUSED)
async def test_a_detail_the_tile_rule_does_not_price_is_refused_naming_where_it_is(
    tmp_path: Path, store_url: str, case: str
) -> None:
    send, where = REFUSED[case]
    fake = FakeUpstream(FakeSettings(latency=0.15))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        with pytest.raises(openai.BadRequestError) as refused:
            await call(stack, send)
        row = await tenant_row(stack.ledger)
    error: Any = refused.value.body
    assert error["code"] == "unpriced_feature" and error["param"] == where, error
    assert where in error["message"] and "Use low, high or auto" in error["message"], error
    assert fake.requests == [] and (row.spent, row.reserved) == (0, 0)


@pytest.mark.parametrize("where", ["message", "function-output"])
async def test_an_image_without_a_detail_is_reserved_as_auto(
    tmp_path: Path, store_url: str, where: str
) -> None:
    image = {"type": "input_image", "image_url": CHART}
    given = (
        [{"role": "user", "content": [ASK, image]}]
        if where == "message"
        else function_output(image)
    )
    fake = FakeUpstream(FakeSettings(latency=0.15))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(stack.ledger, call(stack, responses(given)))
    [billed] = fake.billed
    assert billed.prompt_tokens > 1445, billed  # the image, billed by the tile rule
    assert billed_cost(billed) <= charged <= reserved, (billed_cost(billed), charged, reserved)
