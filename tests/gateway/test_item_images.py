"""Images and files in Responses input items other than messages are reserved as what the
provider bills them as, with the real openai SDK: a `computer_call_output` screenshot, the
`input_image` parts of a function (or custom tool) call's output and a stored prompt's image
variable by the tile rule times the model's image factor, never by the few tokens of a URL or a
file id; an `input_file` there as a document. A model without an image rule refuses them with
400 `unpriced_feature` naming where the image is, before anything is reserved or sent.

The fake provider bills those images by the published tile rule (testing/fake_tokens.py:
gpt-4o-mini 2833 + 5667 a tile, 8 tiles for an image it cannot measure), and the expected
amounts are its bill priced by tests/prices_support.py."""

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
    billed_cost,
    edited_policy,
    measured_call,
    prices_policy,
    tenant_row,
)

from proxy.policy import load_policy
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

LATENCY = 0.15
CHART = "https://x.test/chart.png"
"""An image the fake cannot measure: gpt-4o-mini bills it 2833 + 8 × 5667 = 48,169 tokens."""


def png(width: int, height: int) -> str:
    """The header of a PNG of that size, as a data URL: enough for its size to be read."""
    ihdr = struct.pack(">II", width, height) + b"\x08\x06\x00\x00\x00"
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"
    return "data:image/png;base64," + base64.b64encode(head).decode()


SCREEN = png(1280, 800)
"""6 tiles: gpt-4o-mini bills 2833 + 6 × 5667 = 36,835 tokens for it."""
CALL = {"type": "function_call", "call_id": "call_1", "name": "open_chart", "arguments": "{}"}
CHART_OUTPUT = {
    "type": "function_call_output",
    "call_id": "call_1",
    "output": [
        {"type": "input_text", "text": "The chart:"},
        {"type": "input_image", "image_url": CHART, "detail": "high"},
    ],
}
SNAP_CALL = {"type": "custom_tool_call", "call_id": "call_2", "name": "snap", "input": "now"}
SNAP_OUTPUT = {
    "type": "custom_tool_call_output",
    "call_id": "call_2",
    "output": [{"type": "input_image", "file_id": "file-snap"}],
}
CLICK = {
    "type": "computer_call",
    "id": "cu_1",
    "call_id": "call_3",
    "action": {"type": "screenshot"},
    "pending_safety_checks": [],
    "status": "completed",
}
SCREENSHOT = {
    "type": "computer_call_output",
    "call_id": "call_3",
    "output": {"type": "computer_screenshot", "image_url": SCREEN},
}
ASK = {"role": "user", "content": "What does the chart show?"}


def client(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
    )


async def respond(stack: Stack, model: str, given: list[Any] | None, **extra: Any) -> None:
    async with client(stack) as sdk:
        stream = extra.pop("stream", False)
        if given is not None:
            extra["input"] = given
        answer = await sdk.responses.create(
            model=model, max_output_tokens=20, stream=stream, **extra
        )
        if stream:
            _ = [event async for event in answer]  # type: ignore[union-attr]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_images_in_tool_outputs_and_screenshots_are_reserved_as_images(
    tmp_path: Path, store_url: str, stream: bool
) -> None:
    """Three images (≈ 130,000 tokens on gpt-4o-mini) whose JSON is a few dozen tokens: a
    reservation of their JSON would be charged past."""
    given = [ASK, CALL, CHART_OUTPUT, SNAP_CALL, SNAP_OUTPUT, CLICK, SCREENSHOT]
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(
            stack.ledger, respond(stack, "gpt-4o-mini", given, stream=stream)
        )
    [billed] = fake.billed
    assert billed.prompt_tokens > 2 * 48_169 + 36_835, billed
    assert billed_cost(billed) <= charged <= reserved, (billed, charged, reserved)


@pytest.mark.parametrize("given", [[ASK], None], ids=["with-input", "prompt-alone"])
async def test_a_stored_prompt_s_image_and_file_variables_are_reserved(
    tmp_path: Path, store_url: str, given: list[Any] | None
) -> None:
    """The stored prompt is a document; its variables bring an image and one more document
    (long ones: more than the 25 % by which the reservation's cache-write price exceeds the
    input price). The prompt may be the whole input."""
    mini = "gpt-4o-mini: {input: 0.15, cached_input: 0.075, output: 0.60, "
    policy = edited_policy(tmp_path, mini, mini + "documents: {tokens_per_file: 50000}, ")
    variables = {
        "chart": {"type": "input_image", "image_url": CHART},
        "report": {"type": "input_file", "file_id": "file-report"},
        "tone": "terse",
    }
    fake = FakeUpstream(FakeSettings(latency=LATENCY, document_tokens=50_000))
    async with local_stack(policy, store=store_url, fake=fake) as stack:
        prompt = {"id": "pmpt_analyst", "variables": variables}
        _, reserved, charged = await measured_call(
            stack.ledger, respond(stack, "gpt-4o-mini", given, prompt=prompt)
        )
    [billed] = fake.billed
    assert billed.documents == 2 and billed.prompt_tokens > 48_169 + 100_000, billed
    assert billed_cost(billed) <= charged <= reserved, (billed, charged, reserved)


MINI_41 = "  gpt-4.1-mini: {input: 0.40, cached_input: 0.10, output: 1.60}\n"
"""A model priced per 32-px patch, whose image rule the proxy does not know."""
CODE = {
    "type": "code_interpreter_call",
    "id": "ci_1",
    "code": "plot()",
    "container_id": "cntr_1",
    "status": "completed",
    "outputs": [{"type": "image", "url": CHART}],
}
MADE = {"type": "image_generation_call", "id": "ig_1", "status": "completed", "result": "iVBO"}
PLACES: dict[str, tuple[list[Any], str]] = {
    "function_call_output": ([CALL, CHART_OUTPUT], "input[2].output[1]"),
    "custom_tool_call_output": ([SNAP_CALL, SNAP_OUTPUT], "input[2].output[0]"),
    "computer_call_output": ([CLICK, SCREENSHOT], "input[2].output"),
    "code_interpreter_call": ([CODE], "input[1].outputs[0]"),
    "image_generation_call": ([MADE], "input[1].result"),
}
"""An image in an item other than a message (sent after ASK), and the path the proxy names it
by."""


@pytest.mark.parametrize("place", PLACES)
async def test_an_item_s_image_on_a_model_without_an_image_rule_is_refused_naming_it(
    tmp_path: Path, store_url: str, place: str
) -> None:
    items, where = PLACES[place]
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace("{limit}", "50").replace("models:\n", "models:\n" + MINI_41, 1))
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(load_policy(path), store=store_url, fake=fake) as stack:
        with pytest.raises(openai.BadRequestError) as raised:
            await respond(stack, "gpt-4.1-mini", [ASK, *items])
        row = await tenant_row(stack.ledger)
    error: Any = raised.value.body
    assert error["code"] == "unpriced_feature" and error["param"] == where, error
    assert "image_token_factor" in error["message"], error
    assert fake.requests == [] and fake.billed == []
    assert (row.spent, row.reserved) == (0, 0)
