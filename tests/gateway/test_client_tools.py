"""Anthropic's client tools (bash, the text editor, computer use) run on the client, but each adds
input tokens its few bytes of JSON do not show: Anthropic's tool docs list 245 for bash, 700
for the text editor, 735 for computer use plus its own system prompt (466 to 499 tokens). The
fake provider bills those (proxy/testing/fake_claude_tokens.py); the proxy reserves each tool
type's tokens from the model's `client_tool_tokens` (the published ones for `claude*` models,
which a policy may extend), and refuses a client tool type it has no number for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prices_support import HEADERS, billed_cost, edited_policy, measured, prices_policy, tenant_row

from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

LATENCY = 0.15
MESSAGES = "/v1/messages"
BASH = {"type": "bash_20250124", "name": "bash"}
EDITOR = {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}
COMPUTER = {
    "type": "computer_20250124",
    "name": "computer",
    "display_width_px": 1024,
    "display_height_px": 768,
}
MEMORY = {"type": "memory_20250818", "name": "memory"}
HAIKU_INPUT_UNITS = 100
"""claude-haiku-4's input price, $1 per 1M tokens, in units per token."""
TOOLS = {
    "bash": [BASH],
    "text editor": [EDITOR],
    "computer use": [COMPUTER],
    "all three": [BASH, EDITOR, COMPUTER],
}


def claude(tools: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    said = [{"role": "user", "content": "List the files."}]
    return {"model": "claude-haiku-4", "max_tokens": 5, "messages": said, "tools": tools, **extra}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("name", TOOLS)
async def test_client_tools_are_reserved_at_the_tokens_anthropic_lists_for_them(
    tmp_path: Path, store_url: str, name: str, stream: bool
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        body = claude(TOOLS[name], stream=stream)
        call = await measured(http, stack.url + MESSAGES, stack.ledger, body)
    assert call.status == 200, call.answer
    [billed] = fake.billed
    assert billed.prompt_tokens > 346 + 245, billed
    assert billed_cost(billed) == call.charged <= call.reserved, (billed, call)


UNLISTED = {
    "a bash version nobody lists": {"type": "bash_20990101", "name": "bash"},
    "the memory tool, whose tokens are not published": MEMORY,
    "an undated text editor": {"type": "text_editor", "name": "edit"},
}


@pytest.mark.parametrize("name", UNLISTED)
async def test_a_client_tool_type_without_listed_tokens_is_refused_naming_it(
    tmp_path: Path, store_url: str, name: str
) -> None:
    tool = UNLISTED[name]
    async with (
        local_stack(prices_policy(tmp_path), store=store_url) as stack,
        aiohttp.ClientSession() as http,
    ):
        body = claude([BASH, tool])
        async with http.post(stack.url + MESSAGES, json=body, headers=HEADERS) as r:
            assert r.status == 400
            answer = await r.json()
        assert answer["type"] == "error", answer
        assert answer["error"]["code"] == "unpriced_feature", answer
        assert f"'{tool['type']}'" in answer["error"]["message"], answer
        assert "client_tool_tokens" in answer["error"]["message"], answer
        assert stack.fake.calls == 0
        row = await tenant_row(stack.ledger)
        assert (row.spent, row.reserved) == (0, 0)


async def test_the_policy_can_list_a_client_tool_type_and_its_tokens_are_reserved(
    tmp_path: Path, store_url: str
) -> None:
    """`client_tool_tokens: {memory_20250818: 900}` admits the memory tool, and its calls reserve
    900 prompt tokens more than with the tool listed at 0."""
    reserved = []
    for tokens in (900, 0):
        model = "claude-haiku-4: {input: 1,"
        listed = f"claude-haiku-4: {{client_tool_tokens: {{memory_20250818: {tokens}}}, input: 1,"
        policy = edited_policy(tmp_path, model, listed)
        async with (
            local_stack(policy, store=store_url) as stack,
            aiohttp.ClientSession() as http,
        ):
            stack.fake.settings.latency = LATENCY
            call = await measured(http, stack.url + MESSAGES, stack.ledger, claude([MEMORY]))
        assert call.status == 200, call.answer
        reserved.append(call.reserved)
    assert reserved[0] - reserved[1] == 900 * HAIKU_INPUT_UNITS


async def test_a_dated_tool_type_nobody_prices_is_refused_naming_the_type(
    tmp_path: Path, store_url: str
) -> None:
    """A typed tool that is no client tool is a server tool billed per call: one the model does
    not price (here a type no provider has) is refused, and the message names the type sent."""
    tool = {"type": "web_scrape_20990101", "name": "scrape"}
    async with (
        local_stack(prices_policy(tmp_path), store=store_url) as stack,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(stack.url + MESSAGES, json=claude([tool]), headers=HEADERS) as r:
            assert r.status == 400
            answer = await r.json()
        assert answer["error"]["code"] == "unpriced_feature", answer
        assert "'web_scrape_20990101'" in answer["error"]["message"], answer
        assert stack.fake.calls == 0
        row = await tenant_row(stack.ledger)
        assert (row.spent, row.reserved) == (0, 0)
