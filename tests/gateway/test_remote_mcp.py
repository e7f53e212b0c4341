"""A Responses `mcp` tool (a remote MCP server, or a connector) is a hosted tool (issue 13): the
provider imports the server's tool list into the prompt (an `mcp_list_tools` item) and calls the
server inside the one response, each call's output added to the prompt and billed as input
("no cost associated with the tool directly, though you are still billed for the tokens":
OpenAI's remote MCP guide). So a model must price it, `tool_calls: {mcp: {per_call: 0,
input_tokens: N}}`, N being the most one call's output (or the server's tool list) adds; its
calls are pooled under `max_tool_calls`, written with `bound: hard`, and each `mcp` entry
reserves one more N for its tool list. A model that does not price it refuses the call with 400
`unpriced_feature` naming it, before anything is reserved or sent.

Each call runs with the real openai SDK on both stores, and the fake provider, which bills each
MCP call's output and each server's tool list as input, is the oracle: billed <= charged <=
reserved. The calls name the standard tier, so gpt-5's dearer tiers leave no slack to hide the
tools' input in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from prices_support import (
    HEADERS,
    billed_cost,
    edited_policy,
    measured_call,
    prices_policy,
    tenant_row,
)

from proxy.policy.runtime import Policy
from proxy.testing import fake_billing
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

LATENCY = 0.15
OUTPUT_TOKENS = 5000
"""What each MCP call's output, and each server's tool list, adds to the prompt here."""
DOCS = {
    "type": "mcp",
    "server_label": "deepwiki",
    "server_url": "https://mcp.deepwiki.com/mcp",
    "require_approval": "never",
}
MAIL = {
    "type": "mcp",
    "server_label": "mail",
    "connector_id": "connector_gmail",
    "authorization": "token",
    "require_approval": "never",
}


def mcp_priced(tmp_path: Path) -> Policy:
    """The prices policy with gpt-5 pricing MCP as OpenAI bills it (the tokens it adds alone),
    and no other hosted tool, whose fees would leave a stored prompt's reservation slack; its
    cache writes (none are made here) at its input price, so the prompt is reserved at that
    price rather than at the default write price, 1.25 times it."""
    old = (
        "    tool_calls:\n"
        "      web_search: {per_call: 0.01, input_tokens: 600}\n"
        "      file_search: 0.0025\n"
        "      code_interpreter: {per_call: 0.03, input_tokens: 600}\n"
    )
    mcp = f"    tool_calls:\n      mcp: {{per_call: 0, input_tokens: {OUTPUT_TOKENS}}}\n"
    mcp += "    cache_write: 1.25\n"
    return edited_policy(tmp_path, old, mcp)


async def respond(stack: Stack, stream: bool = False, **body: Any) -> Any:
    """One gpt-5 call at the standard tier through the openai SDK: the response (the completed
    one, for a stream)."""
    async with openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
    ) as sdk:
        args = {"model": "gpt-5", "input": "Summarise the docs.", "max_output_tokens": 20}
        args |= {"service_tier": "default", **body}
        if not stream:
            return await sdk.responses.create(**args)
        events = [event async for event in await sdk.responses.create(**args, stream=True)]
        return next(e.response for e in events if e.type == "response.completed")


CASES: dict[str, tuple[dict[str, Any], int]] = {
    "one-server-plan-default": ({"tools": [DOCS]}, 9),
    "one-server-streamed": ({"tools": [DOCS], "stream": True}, 4),
    "two-servers-bounded": ({"tools": [DOCS, MAIL], "max_tool_calls": 2}, 9),
    "connector-only-listed": ({"tools": [MAIL]}, 0),
}
"""The request, and the calls the fake would make if allowed."""


@pytest.mark.parametrize("case", CASES)
async def test_mcp_calls_and_tool_lists_are_reserved_and_charged_as_billed(
    tmp_path: Path, store_url: str, case: str
) -> None:
    body, made = CASES[case]
    settings = FakeSettings(
        latency=LATENCY, hosted_tool_calls=made, tool_input_tokens=OUTPUT_TOKENS
    )
    fake = FakeUpstream(settings)
    async with local_stack(mcp_priced(tmp_path), store=store_url, fake=fake) as stack:
        answer, reserved, charged = await measured_call(stack.ledger, respond(stack, **body))
    [billed] = fake.billed
    [(_, _, sent)] = fake.requests
    servers = len(body["tools"])
    calls = min(made, body.get("max_tool_calls", 4))  # the plan's default_max_tool_calls: 4
    kinds = [item.type for item in answer.output]
    assert kinds.count("mcp_list_tools") == servers and kinds.count("mcp_call") == calls
    assert sent["max_tool_calls"] == body.get("max_tool_calls", 4)  # written with bound: hard
    assert billed.tool_input_tokens == (servers + calls) * OUTPUT_TOKENS
    assert billed.tool_calls == ({"mcp": calls} if calls else {})
    assert billed_cost(billed) == charged <= reserved, (billed, charged, reserved)


async def test_a_stored_prompt_s_mcp_server_lists_its_tools_within_the_reservation(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored prompt may carry an `mcp` tool the request does not show: on a model pricing
    MCP it reserves its calls (pooled) and one server's tool list. The fake plays a template
    with an MCP server, and bills the template as the document it is."""
    original = fake_billing.hosted_tools

    def with_template_tools(
        endpoint: str, body: dict[str, Any], made: int
    ) -> tuple[dict[str, int], list[dict[str, Any]]]:
        if endpoint == "responses" and isinstance(body.get("prompt"), dict):
            body = {**body, "tools": [*(body.get("tools") or ()), DOCS]}
        return original(endpoint, body, made)

    monkeypatch.setattr(fake_billing, "hosted_tools", with_template_tools)
    settings = FakeSettings(
        latency=LATENCY, hosted_tool_calls=9, tool_input_tokens=OUTPUT_TOKENS, document_tokens=3000
    )
    fake = FakeUpstream(settings)
    async with local_stack(mcp_priced(tmp_path), store=store_url, fake=fake) as stack:
        call = respond(stack, prompt={"id": "pmpt_researcher"})
        _, reserved, charged = await measured_call(stack.ledger, call)
    [billed] = fake.billed
    assert billed.tool_calls == {"mcp": 4}
    assert billed.tool_input_tokens == 5 * OUTPUT_TOKENS  # one tool list, four calls
    assert billed_cost(billed) == charged <= reserved, (billed, charged, reserved)


@pytest.mark.parametrize("tool", [DOCS, MAIL], ids=["server", "connector"])
async def test_mcp_on_a_model_that_does_not_price_it_is_refused_naming_it(
    tmp_path: Path, store_url: str, tool: dict[str, Any]
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        with pytest.raises(openai.BadRequestError) as raised:
            await respond(stack, tools=[tool])
        row = await tenant_row(stack.ledger)
    body: Any = raised.value.body
    error = body.get("error", body)
    assert error["code"] == "unpriced_feature" and error["param"] == "tools", error
    assert "hosted tool 'mcp'" in error["message"], error
    assert "tool_calls: {mcp: {per_call: 0, input_tokens:" in error["message"], error
    assert "models.gpt-5" in error["message"], error
    assert fake.requests == [] and fake.billed == []
    assert (row.spent, row.reserved) == (0, 0)
