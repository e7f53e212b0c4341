"""An OpenAI Agents SDK loop whose tool is an MCP server's (tests/mcp_upstream.py, in both answer
modes), its model the fake provider told to call that tool for `tool_rounds` rounds: issue 20's
acceptance point 4, an agent loop stops at the run budget whichever comes first, tokens or tool
calls.

The first two tests reach the fake and the MCP server directly (the loop itself). The rest run
the agent through the proxy, model calls on `stack.url + "/v1"` and the tool on
`stack.url + "/mcp/crm"`, the `X-Cycles-Tenant` / `X-Cycles-Run` headers on both, with a fake
that would call the tool 50 times, and assert the ledger's run lines beside the fake's books,
the server's own record of what ran, the audit and what the agent saw."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
from agents import Agent, ModelSettings, OpenAIResponsesModel, RunConfig, RunHooks, Runner
from agents.exceptions import AgentsException, MaxTurnsExceeded
from agents.mcp import MCPServerStreamableHttp, create_static_tool_filter
from mcp_support import Upstream, upstream
from prices_support import UNITS, billed_cost

from proxy.policy import load_policy
from proxy.testing.fake_openai import WORD
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack, serving

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


POLICY = """
identity: header
upstreams:
  openai: {{base_url: "https://api.openai.com/v1"}}
routes:
  - {{model: "*", upstream: openai}}
models:
  gpt-4o-mini: {{input: 0.15, cached_input: 0.075, output: 0.60}}
mcp_servers:
  crm: {{url: "{url}", token_env: CRM_MCP_TOKEN}}
actions:
  "mcp:crm/*": {{TOOL_CALLS: 1}}
plans:
  agentic:
    budgets:
      run: {{limit: "{usd}"}}
    action_budgets:
      run: {{limit: {tool_calls}, unit: TOOL_CALLS}}
    quotas: {{steps_per_run: {steps}}}
tenants:
  acme: {{plan: agentic}}
"""
ROUNDS = 50
"""The fake would call the tool this many times: far more than any budget here admits."""


@asynccontextmanager
async def agents_proxy(
    tmp_path: Path, up: Upstream, store_url: str, usd: str, tool_calls: int, steps: int
) -> AsyncIterator[Stack]:
    """The proxy fronting `up` as server crm, its fake calling the tool for ROUNDS rounds."""
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(url=up.url, usd=usd, tool_calls=tool_calls, steps=steps))
    fake = FakeUpstream(FakeSettings(tool_rounds=ROUNDS))
    async with local_stack(load_policy(path), store=store_url, fake=fake, sweep_every=None) as s:
        yield s


async def run_line(stack: Stack, run: str, unit: str) -> tuple[int, int]:
    """(spent, reserved) of the run's line in `unit`."""
    for row in await stack.ledger.balances("acme"):
        if (row.level, row.value, row.unit) == ("run", run, unit):
            return row.spent, row.reserved
    return 0, 0


async def allowed(stack: Stack, action: str | None) -> list[dict[str, int]]:
    """The amounts of each reservation the audit records as allowed: tool calls of `TOOL` when
    `action` is its key, model calls when it is None."""
    trail = await stack.stores.tenants.audit("acme")
    return [
        {unit: int(n) for unit, n in (a.split("=") for a in e.fields["amounts"].split(","))}
        for e in trail
        if e.kind == "reserve"
        and e.fields.get("action") == action
        and e.fields.get("decision") == "ALLOW"
    ]


def usd(units: int) -> str:
    """A USD amount in the ledger's units (1e-8 USD) as the policy writes it."""
    return str(Decimal(units) / UNITS)


K = 3
"""Model calls the run's USD budget admits in the tokens-first test."""
KEY = f"mcp:crm/{TOOL}"


async def calibrated(tmp_path: Path, up: Upstream) -> tuple[list[int], list[int]]:
    """What the fake billed (by prices_support's oracle) and what the ledger held for each of
    the loop's first K + 1 model calls, from a run under a generous budget (the same bodies:
    the fake answers alike to alike requests)."""
    async with agents_proxy(tmp_path, up, "memory://", "5", 100, 1000) as stack:
        headers = {**HEADERS, "X-Cycles-Run": "run-calibration"}
        outcome, _, _ = await run_agent(stack.url + "/v1", stack.url + "/mcp/crm", headers, K + 1)
        assert isinstance(outcome, MaxTurnsExceeded)
        bills = [billed_cost(b) for b in stack.fake.billed]
        held = [a["USD"] for a in await allowed(stack, None)]
    assert len(bills) == len(held) == K + 1
    assert all(b <= h for b, h in zip(bills, held, strict=True))
    return bills, held


async def test_tokens_first_the_run_stops_at_the_model_call_its_usd_cannot_hold(
    tmp_path: Path, upstream: Upstream, store_url: str
) -> None:
    """A run USD budget that holds the K-th model call's reservation exactly (what the first
    K - 1 were billed, plus what the K-th holds), with a generous tool budget: the (K+1)-th
    model call is refused (402, which the Agents SDK raises), so the loop ends after K model
    calls and the K tool calls they asked for. The run line is charged what the fake billed."""
    bills, held = await calibrated(tmp_path, upstream)
    limit = sum(bills[: K - 1]) + held[K - 1]
    assert held[K] > limit - sum(bills[:K])  # the (K+1)-th cannot fit
    run = "run-tokens-first"
    before = len(upstream.sent())
    async with agents_proxy(tmp_path, upstream, store_url, usd(limit), 100, 1000) as stack:
        headers = {**HEADERS, "X-Cycles-Run": run}
        outcome, model_calls, tool_calls = await run_agent(
            stack.url + "/v1", stack.url + "/mcp/crm", headers, ROUNDS
        )
        assert isinstance(outcome, openai.APIStatusError) and outcome.status_code == 402
        assert f"Budget exceeded on run '{run}'" in outcome.message
        assert (model_calls, tool_calls) == (K, K)
        assert [billed_cost(b) for b in stack.fake.billed] == bills[:K]
        assert len(upstream.sent()) - before == K
        assert await run_line(stack, run, "USD") == (sum(bills[:K]), 0)
        assert await run_line(stack, run, "TOOL_CALLS") == (K, 0)
        assert len(await allowed(stack, KEY)) == K


async def test_tool_calls_first_no_call_past_the_budget_reaches_the_server(
    tmp_path: Path, upstream: Upstream, store_url: str
) -> None:
    """A run budget of 3 tool calls, a generous USD budget, steps_per_run 10. What stops at
    the run budget is the tool calls: the 3 admitted reach the server; every later one is an
    isError result the model reads (the next model request carries it) and the server never
    sees. The fake, unlike a model reading that text, keeps calling the tool, so the loop
    itself ends at the run's step quota, which tool and model calls both count (a budget
    denial is not a step): 7 model calls and 3 tool calls are its 10 steps; tool calls 4 to 6
    are budget denials, the 7th the quota's, and the 8th model call is refused 429."""
    run = "run-tools-first"
    before = len(upstream.sent())
    async with agents_proxy(tmp_path, upstream, store_url, "5", 3, 10) as stack:
        headers = {**HEADERS, "X-Cycles-Run": run}
        outcome, model_calls, tool_calls = await run_agent(
            stack.url + "/v1", stack.url + "/mcp/crm", headers, ROUNDS
        )
        assert isinstance(outcome, openai.RateLimitError)
        assert "steps_per_run" in outcome.message
        assert (model_calls, tool_calls) == (7, 7)
        assert len(upstream.sent()) - before == 3
        outputs = [
            str(i.get("output"))
            for i in stack.fake.requests[-1][2]["input"]
            if i.get("type") == "function_call_output"
        ]
        assert len(outputs) == 6 and all("sent to" in o for o in outputs[:3])
        denial = f"Budget exceeded on run '{run}': 0 TOOL_CALLS remaining of 3 TOOL_CALLS"
        assert all(denial in o for o in outputs[3:]), outputs
        assert await run_line(stack, run, "TOOL_CALLS") == (3, 0)
        assert len(await allowed(stack, KEY)) == 3
        spent = sum(billed_cost(b) for b in stack.fake.billed)
        assert len(stack.fake.billed) == 7
        assert await run_line(stack, run, "USD") == (spent, 0)
