"""What a Claude call asks for beyond its text is reserved once, at its price: Anthropic's tool-use
system prompt (the model's `tool_prompt_tokens`, never twice), and prompt caching, whose writes
cost more than input (a 5-minute write the model's `cache_write`, a one-hour write, `ttl: "1h"`,
twice the input price). The fake provider writes the prompt up to each `cache_control`
breakpoint and reports the writes by TTL (`usage.cache_creation`), or, like older servers, only
their total, or a split that leaves some out; the tests price its bill with their own formula
(tests/prices_support.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prices_support import (
    HEADERS,
    billed_cost,
    edited_policy,
    measured,
    prices_policy,
    tenant_row,
)

from proxy.policy.describe import describe
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

LATENCY = 0.15
"""Long enough to read a call's reservation while it is upstream."""
MESSAGES = "/v1/messages"
PREFIX = "You review pull requests for a payments team; be strict about money. " * 120
"""A system prompt worth caching: about 1,700 tokens."""
FIVE = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
HAIKU_INPUT_UNITS = 100
"""claude-haiku-4's input price, $1 per 1M tokens, in units per token."""
CLAUDE_TOOL_PROMPT = 346
SMALL_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def claude(system: Any = None, **extra: Any) -> dict[str, Any]:
    said = [{"role": "user", "content": "Review this diff."}]
    body = {"model": "claude-sonnet-4", "max_tokens": 40, "messages": said, **extra}
    return body if system is None else {**body, "system": system}


def system_block(cache_control: dict[str, str]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": PREFIX, "cache_control": cache_control}]


CACHED = {
    "5m-system": (claude(system_block(FIVE)), False),
    "1h-system": (claude(system_block(HOUR)), True),
    "1h-system-5m-message": (
        claude(
            system_block(HOUR),
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Diff: " * 300, "cache_control": FIVE}],
                }
            ],
        ),
        True,
    ),
    "1h-top-level": (claude(PREFIX, cache_control=HOUR), True),
    "1h-on-a-tool": (claude(PREFIX, tools=[{**SMALL_TOOL, "cache_control": HOUR}]), True),
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("name", CACHED)
async def test_cache_writes_are_reserved_at_their_ttl_price_and_charged_as_reported(
    tmp_path: Path, store_url: str, name: str, stream: bool
) -> None:
    """The fake writes the prompt up to the breakpoints and bills it at each TTL's price: the
    reservation covers that, and the charge is the bill, one-hour writes at their own price."""
    body, one_hour = CACHED[name]
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + MESSAGES, stack.ledger, {**body, "stream": stream})
    assert call.status == 200, call.answer
    [billed] = fake.billed
    # A tool's breakpoint writes the tools alone (the tool prompt and a definition).
    assert billed.cache_write_tokens + billed.cache_write_1h_tokens > CLAUDE_TOOL_PROMPT, billed
    assert (billed.cache_write_1h_tokens > 0) == one_hour, billed
    assert billed_cost(billed) == call.charged <= call.reserved, (billed, call)


async def test_cache_writes_reported_without_their_ttl_are_charged_at_the_ttl_asked(
    tmp_path: Path, store_url: str
) -> None:
    """A server that reports only `cache_creation_input_tokens`: the writes of a call that
    asked for a one-hour cache are charged at the one-hour price, never at the 5-minute one."""
    body = claude(system_block(HOUR))
    fake = FakeUpstream(FakeSettings(latency=LATENCY, cache_ttl_split=False))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + MESSAGES, stack.ledger, body)
    assert call.status == 200, call.answer
    assert "cache_creation" not in call.answer["usage"]
    [billed] = fake.billed
    assert billed.cache_write_1h_tokens > 1000
    assert billed_cost(billed) == call.charged <= call.reserved


UNEXPLAINED = {
    "0/0 split, whole": (FakeSettings(latency=LATENCY, cache_split_zeroed=True), False),
    "0/0 split, stream": (FakeSettings(latency=LATENCY, cache_split_zeroed=True), True),
    "total raised in message_delta": (FakeSettings(latency=LATENCY, cache_writes_late=True), True),
}
"""Usage reports whose `cache_creation` split does not account for every write."""


@pytest.mark.parametrize("name", UNEXPLAINED)
async def test_writes_the_ttl_split_leaves_unexplained_are_charged_at_the_longest_ttl_asked(
    tmp_path: Path, store_url: str, name: str
) -> None:
    """Anthropic has reported `cache_creation_input_tokens` with a 0/0 split on web search turns,
    and a stream's `message_delta` may raise the total without resending the split: the writes
    the split leaves out are charged at the one-hour price the call asked for, as billed."""
    settings, stream = UNEXPLAINED[name]
    fake = FakeUpstream(settings)
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        body = {**claude(system_block(HOUR)), "stream": stream}
        call = await measured(http, stack.url + MESSAGES, stack.ledger, body)
    assert call.status == 200, call.answer
    [billed] = fake.billed
    assert billed.cache_write_1h_tokens > 1000, billed
    assert billed_cost(billed) == call.charged <= call.reserved, (billed, call)


async def test_cache_writes_on_a_model_without_a_write_price_are_charged_at_1_25x_input(
    tmp_path: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider may report cache writes the request did not ask for (Anthropic's automatic
    caching, an account-level setting): on a model the policy prices without `cache_write` they
    are charged at Anthropic's published 1.25 times the input price, never as plain input, and
    the operator is told to add the price."""
    policy = edited_policy(tmp_path, "cache_write: 1.25, output: 5", "output: 5")
    fake = FakeUpstream(FakeSettings(latency=LATENCY, cache_write_tokens=1000))
    body = {**claude(PREFIX), "model": "claude-haiku-4"}
    async with (
        local_stack(policy, store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + MESSAGES, stack.ledger, body)
    assert call.status == 200, call.answer
    [billed] = fake.billed
    assert billed.cache_write_tokens == 1000, billed
    # billed_cost prices claude-haiku-4's writes at $1.25 per 1M: 1.25 × its $1 input.
    assert billed_cost(billed) == call.charged, (billed, call)
    assert "DEFAULTED CACHE WRITE PRICE" in caplog.text
    assert "models.claude-haiku-4" in caplog.text


REFUSED = {
    "a model without cache_write": (
        {**claude(system_block(FIVE)), "model": "gpt-4o"},
        "system[0].cache_control",
        "cache_write",
    ),
    "a ttl nobody prices": (
        claude(system_block({"type": "ephemeral", "ttl": "2h"})),
        "system[0].cache_control",
        "'5m' or '1h'",
    ),
    "a cache type nobody prices": (
        claude(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "x", "cache_control": {"type": "x"}}],
                }
            ]
        ),
        "messages[0].content[0].cache_control",
        "ephemeral",
    ),
    "a cache_control that is not an object": (
        claude(cache_control="yes"),
        "cache_control",
        "ephemeral",
    ),
}


@pytest.mark.parametrize("name", REFUSED)
async def test_a_cache_write_the_policy_cannot_price_is_refused_and_changes_nothing(
    tmp_path: Path, store_url: str, name: str
) -> None:
    body, param, words = REFUSED[name]
    async with (
        local_stack(prices_policy(tmp_path), store=store_url) as stack,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(stack.url + MESSAGES, json=body, headers=HEADERS) as r:
            assert r.status == 400
            answer = await r.json()
        assert answer["type"] == "error", answer
        assert answer["error"]["type"] == "invalid_request_error"
        assert param in answer["error"]["message"] and words in answer["error"]["message"]
        assert stack.fake.calls == 0
        row = await tenant_row(stack.ledger)
        assert (row.spent, row.reserved) == (0, 0)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_anthropic_s_tool_prompt_is_reserved_once(
    tmp_path: Path, store_url: str, stream: bool
) -> None:
    """Anthropic adds its tool-use system prompt (346 tokens) once to a call with tools, and the
    fake bills it once. The reservation may exceed the bill by the tokenizer factor's margin on
    the counted text, never by a second tool prompt: that would deny calls a budget can hold."""
    body = {
        "model": "claude-haiku-4",
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "Weather in Lyon?"}],
        "tools": [SMALL_TOOL],
        "stream": stream,
    }
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + MESSAGES, stack.ledger, body)
    assert call.status == 200, call.answer
    [billed] = fake.billed
    assert billed_cost(billed) == call.charged <= call.reserved
    # Same completion either way: the difference is prompt tokens at the input price.
    over = (call.reserved - call.charged) // HAIKU_INPUT_UNITS
    assert over < CLAUDE_TOOL_PROMPT, f"reserved {over} prompt tokens more than billed"


def test_check_shows_both_cache_write_prices(tmp_path: Path) -> None:
    """The one-hour price defaults to twice the input price (claude-sonnet-4: $3 → $6)."""
    text = describe(prices_policy(tmp_path))
    [sonnet] = [row for row in text.splitlines() if row.strip().startswith("claude-sonnet-4 ")]
    assert "cache_write 3.75, cache_write_1h 6.00" in sonnet
