"""A Responses or Messages stream that ends whole but carries no usage report (a compatible
server that leaves it out) is charged its counted text; what the provider bills beyond tokens,
which the stream does not show (hosted tool calls, Anthropic cache writes), is charged as it was
reserved, since nothing says how many calls ran or what the cache wrote (gateway/settle.py).

The fake provider bills the tool calls and cache writes and, with `send_usage=False`, reports
none of it; the expected amounts are its bill priced by tests/prices_support.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import anthropic
import openai
import prices_support
import pytest
from prices_support import HEADERS, billed_cost, edited_policy, measured_call, prices_policy

from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

LATENCY = 0.15
SEARCHES = 4
GPT4O_SEARCH = (
    "  gpt-4o: {input: 2.50, cached_input: 1.25, output: 10}",
    "  gpt-4o: {input: 2.50, cached_input: 1.25, output: 10, tool_calls: {web_search: 0.01}}",
)
"""gpt-4o with a web search fee: a model that does not reason, so a stream without a report is
charged its counted text (a reasoning model's would be charged its reservation anyway)."""
SYSTEM = "You are the support desk of a small bookshop; answer briefly and kindly. " * 200


async def test_a_responses_stream_without_usage_is_charged_the_tool_calls_it_reserved(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(prices_support.FEES, "gpt-4o", {"web_search": "0.01"})
    fake = FakeUpstream(FakeSettings(latency=LATENCY, hosted_tool_calls=SEARCHES, send_usage=False))
    async with (
        local_stack(edited_policy(tmp_path, *GPT4O_SEARCH), store=store_url, fake=fake) as stack,
        openai.AsyncOpenAI(
            base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS
        ) as client,
    ):

        async def call() -> list[Any]:
            stream = await client.responses.create(
                model="gpt-4o",
                input="Find this week's new releases.",
                tools=[{"type": "web_search"}],
                max_tool_calls=SEARCHES,
                max_output_tokens=20,
                stream=True,
            )
            return [event async for event in stream]

        events, reserved, charged = await measured_call(stack.ledger, call())
    assert events[-1].type == "response.completed" and events[-1].response.usage is None
    [billed] = fake.billed
    assert billed.tool_calls == {"web_search": SEARCHES}, billed
    assert billed_cost(billed) <= charged <= reserved, (billed, charged, reserved)


CLAUDE: dict[str, dict[str, Any]] = {
    "one-hour-cache": {
        "system": [
            {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ]
    },
    "web-search": {
        "system": SYSTEM,
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": SEARCHES}],
    },
}


@pytest.mark.parametrize("case", CLAUDE)
async def test_a_messages_stream_without_usage_is_charged_its_writes_and_searches(
    tmp_path: Path, store_url: str, case: str
) -> None:
    """Half the limit is generated: its counted text, scaled by the tokenizer_factor (1.2),
    stays within the limit the reservation holds."""
    settings = FakeSettings(latency=LATENCY, completion_fraction=0.5, send_usage=False)
    fake = FakeUpstream(dataclasses.replace(settings, hosted_tool_calls=SEARCHES))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        anthropic.AsyncAnthropic(
            base_url=stack.url, api_key="unused", default_headers=HEADERS
        ) as claude,
    ):

        async def call() -> list[Any]:
            stream = await claude.messages.create(
                model="claude-sonnet-4",
                max_tokens=20,
                messages=[{"role": "user", "content": "Any new releases?"}],
                stream=True,
                **CLAUDE[case],
            )
            return [event async for event in stream]

        events, reserved, charged = await measured_call(stack.ledger, call())
    assert events[-1].type == "message_stop"
    assert all(getattr(e, "usage", None) is None for e in events if e.type == "message_delta")
    [billed] = fake.billed
    extras = billed.cache_write_1h_tokens if case == "one-hour-cache" else billed.tool_calls
    assert extras, billed
    assert billed_cost(billed) <= charged <= reserved, (billed, charged, reserved)


async def test_counted_text_past_the_limit_is_charged_at_most_the_limit(
    tmp_path: Path, store_url: str
) -> None:
    """The whole limit is generated; its count, scaled by Claude's tokenizer_factor (1.2), is
    above the limit the provider bills at most: the charge stops at the limit, within the
    reservation."""
    fake = FakeUpstream(FakeSettings(latency=LATENCY, send_usage=False))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        anthropic.AsyncAnthropic(
            base_url=stack.url, api_key="unused", default_headers=HEADERS
        ) as claude,
    ):

        async def call() -> list[Any]:
            stream = await claude.messages.create(
                model="claude-sonnet-4",
                max_tokens=40,
                messages=[{"role": "user", "content": "Any new releases?"}],
                stream=True,
            )
            return [event async for event in stream]

        _, reserved, charged = await measured_call(stack.ledger, call())
    [billed] = fake.billed
    assert billed.completion_tokens == 40, billed
    assert billed_cost(billed) <= charged <= reserved, (billed, charged, reserved)
