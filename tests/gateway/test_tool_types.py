"""A tool's type is what prices it (a hosted tool is billed per call, a function by its JSON),
so a tool definition that is not an object, or whose `type` is not a string, is one the proxy
cannot price: it is refused with 400 naming it (issue 13), before anything is reserved or sent,
on /v1/responses (where a tool without a type is refused too: the API has none),
/v1/chat/completions and /v1/messages. An untyped Anthropic tool is a custom tool, and passes.

Each call runs with the real SDK on both stores; the fake provider is the oracle of the one that
passes: billed <= charged <= reserved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from prices_support import HEADERS, billed_cost, measured_call, prices_policy, tenant_row

from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

FUNCTION = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
CUSTOM = {"name": "lookup", "input_schema": {"type": "object", "properties": {}}}


async def responses(stack: Stack, tools: list[Any]) -> Any:
    async with openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
    ) as sdk:
        return await sdk.responses.create(
            model="gpt-5", input="Look it up.", tools=tools, max_output_tokens=20
        )


async def chat(stack: Stack, tools: list[Any]) -> Any:
    async with openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
    ) as sdk:
        return await sdk.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Look it up."}],
            tools=tools,
            max_completion_tokens=20,
        )


async def claude(stack: Stack, tools: list[Any]) -> Any:
    async with anthropic.AsyncAnthropic(
        base_url=stack.url, api_key="unused", default_headers=HEADERS, max_retries=0
    ) as sdk:
        return await sdk.messages.create(
            model="claude-sonnet-4",
            messages=[{"role": "user", "content": "Look it up."}],
            tools=tools,
            max_tokens=20,
        )


REFUSED: dict[str, tuple[Any, list[Any], str]] = {
    "responses-type-array": (responses, [{"type": []}], "tools[0].type"),
    "responses-type-object": (
        responses,
        [{"type": "function", **FUNCTION}, {"type": {"name": "web_search"}}],
        "tools[1].type",
    ),
    "responses-untyped": (responses, [FUNCTION], "tools[0].type"),
    "responses-not-an-object": (responses, ["web_search"], "tools[0]"),
    "chat-type-number": (chat, [{"type": 5, "function": FUNCTION}], "tools[0].type"),
    "chat-not-an-object": (chat, [["function"]], "tools[0]"),
    "messages-type-array": (claude, [{"type": ["web_search_20250305"], **CUSTOM}], "tools[0].type"),
    "messages-not-an-object": (claude, ["web_search_20250305"], "tools[0]"),
}
"""A call sending a tool the proxy cannot read the type of, and where it names it."""


@pytest.mark.parametrize("case", REFUSED)
async def test_a_tool_whose_type_is_not_a_string_is_refused_before_anything_is_reserved(
    tmp_path: Path, store_url: str, case: str
) -> None:
    send, tools, where = REFUSED[case]
    fake = FakeUpstream(FakeSettings(latency=0.15))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        with pytest.raises((openai.BadRequestError, anthropic.BadRequestError)) as refused:
            await send(stack, tools)
        row = await tenant_row(stack.ledger)
    body: Any = refused.value.body
    error = body.get("error", body)
    assert error["type"] == "invalid_request_error" and error["message"].startswith(where), body
    assert error.get("param", where) == where, body  # Anthropic's errors have no param
    assert fake.requests == [] and (row.spent, row.reserved) == (0, 0)


async def test_an_untyped_anthropic_tool_is_a_custom_tool(tmp_path: Path, store_url: str) -> None:
    fake = FakeUpstream(FakeSettings(latency=0.15))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(stack.ledger, claude(stack, [CUSTOM]))
    [billed] = fake.billed
    assert billed_cost(billed) <= charged <= reserved, (billed_cost(billed), charged, reserved)
