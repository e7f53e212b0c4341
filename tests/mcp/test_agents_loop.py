"""An OpenAI Agents SDK loop whose tool is an MCP server's (tests/mcp_upstream.py, in both answer
modes), its model the fake provider told to call that tool for `tool_rounds` rounds: the ground
for issue 20's acceptance point 4 (an agent loop stops at the run budget, whichever comes first,
tokens or tool calls).

For now the agent reaches the fake and the MCP server DIRECTLY. The budget assertions come when
the proxy's MCP front lands: then `run_agent` gets the proxy's URLs (`stack.url + "/v1"` for the
model, `stack.url + "/mcp/crm"` for the tool) and `X-Cycles-Tenant` / `X-Cycles-Run` headers,
which it already sends on both, and the tests assert the ledger's run line beside the counts
below (the fake's books, the server's own record of what ran, and what the agent saw)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import openai
from agents import Agent, ModelSettings, OpenAIResponsesModel, RunConfig, RunHooks, Runner
from agents.exceptions import AgentsException, MaxTurnsExceeded
from agents.mcp import MCPServerStreamableHttp, create_static_tool_filter
from mcp_support import Upstream, upstream

from proxy.testing.fake_openai import WORD
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import serving

__all__ = ["upstream"]

HEADERS = {"X-Cycles-Tenant": "acme", "X-Cycles-Run": "run-agents-1"}
TOOL = "send_email"
"""The fake calls it with `to` = "x@example.com" (fake_shapes.call_arguments)."""


@dataclass
class Counted(RunHooks[Any]):
    """What the agent saw: model answers received, tool calls finished."""

    model_calls: int = 0
    tool_calls: int = 0

    async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
        self.model_calls += 1

    async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: str) -> None:
        self.tool_calls += 1


async def run_agent(
    model_url: str,
    mcp_url: str,
    headers: dict[str, str],
    max_turns: int,
    *,
    api_key: str = FakeSettings.api_key,
) -> tuple[Any, int, int]:
    """Run an agent whose one tool is the MCP server's send_email, its model on `model_url` (a
    base URL ending in /v1), `headers` sent on every model and MCP request. Returns (the final
    output, or the exception that ended the run; model calls; tool calls) as the agent saw them."""
    counted = Counted()
    client = openai.AsyncOpenAI(
        base_url=model_url, api_key=api_key, default_headers=headers, max_retries=0
    )
    server = MCPServerStreamableHttp(
        params={"url": mcp_url, "headers": headers},
        name="crm",
        cache_tools_list=True,
        tool_filter=create_static_tool_filter(allowed_tool_names=[TOOL]),
    )
    async with client, server:
        agent = Agent(
            name="mailer",
            instructions="Send the email.",
            model=OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client),
            model_settings=ModelSettings(max_tokens=5),
            mcp_servers=[server],
        )
        config = RunConfig(tracing_disabled=True)
        try:
            result = await Runner.run(
                agent, "Mail x.", max_turns=max_turns, hooks=counted, run_config=config
            )
            outcome: Any = result.final_output
        except (AgentsException, openai.APIError) as error:
            outcome = error
    return outcome, counted.model_calls, counted.tool_calls


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


@asynccontextmanager
async def fake_provider(tool_rounds: int) -> AsyncIterator[tuple[FakeUpstream, str]]:
    """The fake provider calling the first tool for `tool_rounds` rounds; (it, its /v1 URL)."""
    fake = FakeUpstream(FakeSettings(tool_rounds=tool_rounds))
    async with serving(fake.app()) as base:
        yield fake, base + "/v1"


async def test_the_agent_calls_the_mcp_tool_each_round_then_answers(upstream: Upstream) -> None:
    before, seen = len(upstream.sent()), len(upstream.headers())
    async with fake_provider(tool_rounds=5) as (fake, model_url):
        outcome, model_calls, tool_calls = await run_agent(model_url, upstream.url, HEADERS, 10)
    assert outcome == WORD * 5
    assert (model_calls, tool_calls) == (6, 5)
    assert upstream.sent()[before:] == ["x@example.com"] * 5
    assert len(fake.requests) == len(fake.billed) == 6
    runs = {lower(sent).get("x-cycles-run") for _, sent, _ in fake.requests}
    assert runs == {"run-agents-1"}
    assert {h.get("x-cycles-run") for h in upstream.headers()[seen:]} == {"run-agents-1"}


async def test_max_turns_ends_the_loop_after_the_last_turns_tool_ran(upstream: Upstream) -> None:
    """The SDK runs the tool the last allowed turn asked for, then stops before the next model
    call: a run that ends early can still have spent a tool call."""
    before = len(upstream.sent())
    async with fake_provider(tool_rounds=5) as (fake, model_url):
        outcome, model_calls, tool_calls = await run_agent(model_url, upstream.url, HEADERS, 3)
    assert isinstance(outcome, MaxTurnsExceeded)
    assert (model_calls, tool_calls) == (3, 3)
    assert len(upstream.sent()) - before == 3
    assert len(fake.billed) == 3
