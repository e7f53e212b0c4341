"""The fake provider's function calls on the Responses API (fake_shapes.function_call): the first
function tool is called while fewer than `tool_rounds` outputs are in the input, then the answer
is text; every round is billed; the call's arguments fill the tool's required string properties
so that a tool such as an MCP server's send_email(to) can run."""

from __future__ import annotations

import json
from typing import Any

import openai

from proxy.testing.fake_openai import WORD
from proxy.testing.fake_shapes import call_arguments
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import serving

PING = {"type": "function", "name": "ping", "parameters": {"type": "object", "properties": {}}}
SEND_EMAIL = {
    "type": "function",
    "name": "send_email",
    "parameters": {
        "type": "object",
        "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
        "required": ["to", "subject"],
    },
}


def output(call_id: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": "pong"}


async def loop(fake: FakeUpstream, tool: dict[str, Any]) -> list[Any]:
    """Run a client-side agent loop to its text answer; every function call the fake made."""
    async with serving(fake.app()) as base:
        key = fake.settings.api_key
        async with openai.AsyncOpenAI(base_url=base + "/v1", api_key=key) as client:
            return await _loop(client, tool)


async def _loop(client: openai.AsyncOpenAI, tool: Any) -> list[Any]:
    calls: list[Any] = []
    items: list[Any] = [{"role": "user", "content": "go"}]
    for _ in range(10):
        answer = await client.responses.create(
            model="gpt-4o-mini", input=items, tools=[tool], max_output_tokens=5
        )
        made = [i for i in answer.output if i.type == "function_call"]
        if not made:
            assert answer.output_text == WORD * 5
            return calls
        calls += made
        items += [made[0].model_dump(exclude_none=True), output(made[0].call_id)]
    raise AssertionError("the fake never stopped calling the tool")


async def test_one_round_by_default() -> None:
    fake = FakeUpstream()
    calls = await loop(fake, PING)
    assert [(c.name, c.call_id, c.arguments) for c in calls] == [("ping", "call_fake", "{}")]
    assert len(fake.requests) == len(fake.billed) == 2


async def test_tool_rounds_calls_the_first_tool_that_many_times_each_billed() -> None:
    fake = FakeUpstream(FakeSettings(tool_rounds=5))
    calls = await loop(fake, PING)
    assert [c.name for c in calls] == ["ping"] * 5
    assert len({c.call_id for c in calls}) == 5
    assert len(fake.requests) == len(fake.billed) == 6


async def test_a_call_fills_the_tools_required_strings() -> None:
    calls = await loop(FakeUpstream(), SEND_EMAIL)
    assert json.loads(calls[0].arguments) == {"to": "x@example.com", "subject": "x"}


def test_call_arguments_fill_required_strings_alone() -> None:
    schema = {
        "type": "object",
        "properties": {
            "email": {"type": "string"},
            "name": {"type": "string"},
            "note": {"type": "string"},
            "city": {"type": "string", "default": "Paris"},
            "count": {"type": "integer"},
        },
        "required": ["email", "name", "city", "count", "missing"],
    }
    assert call_arguments(schema) == {"email": "x@example.com", "name": "x", "city": "Paris"}
    assert call_arguments(None) == call_arguments({"type": "object"}) == {}
