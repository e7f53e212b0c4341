"""tools/call through its budget: exactly N of many concurrent calls reach the server, the rest
are isError results naming the budget; hidden tools are neither listed nor callable; shadow
mode forwards all and records the would-be denials; every ending settles by its rule, even when
the store is down (spilled) or the client has gone."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import aiohttp
import orjson
import pytest
from mcp.shared.exceptions import MCPError
from mcp_support import Upstream, client, emails, proxy, sse_upstream, upstream
from support import eventually

from proxy.core.errors import LedgerUnavailable
from proxy.gateway.context import FAIL_OPEN
from proxy.testing.local import Stack

__all__ = ["sse_upstream", "upstream"]

TOOL = "mcp:crm/send_email"


def text(result: object) -> str:
    return result.content[0].text  # type: ignore[attr-defined, no-any-return]


async def audit(stack: Stack, tenant: str = "acme") -> tuple[int, int, int]:
    """(reserves allowed, denials counted, commits) of `TOOL` in the tenant's audit."""
    trail = await stack.stores.tenants.audit(tenant)
    reserves = [e.fields for e in trail if e.kind == "reserve" and e.fields.get("action") == TOOL]
    allowed = sum(1 for f in reserves if f.get("decision") == "ALLOW")
    denied = sum(int(f.get("count", 1)) for f in reserves if f.get("decision") == "DENY")
    commits = sum(1 for e in trail if e.kind == "commit")
    return allowed, denied, commits


async def tool_calls(stack: Stack) -> dict[str, int]:
    """cycles_tool_calls_total of `TOOL` by outcome, from /metrics."""
    async with aiohttp.ClientSession() as http, http.get(stack.url + "/metrics") as answer:
        text = await answer.text()
    found = {}
    for line in text.splitlines():
        if line.startswith("cycles_tool_calls_total{") and f'tool="{TOOL}"' in line:
            outcome = line.split('outcome="')[1].split('"')[0]
            found[outcome] = int(float(line.rsplit(" ", 1)[1]))
    return found


async def test_exactly_ten_of_30_concurrent_emails_reach_the_server(
    tmp_path: Path, upstream: Upstream, store_url: str
) -> None:
    to = f"c-{secrets.token_hex(4)}"
    async with proxy(tmp_path, upstream, store_url) as stack, client(stack) as mcp:
        calls = [mcp.call_tool("send_email", {"to": f"{to}-{i}"}) for i in range(30)]
        results = await asyncio.gather(*calls)
        denied = [text(r) for r in results if r.is_error]
        assert len(denied) == 20
        assert len(upstream.sent(to)) == 10
        assert "Budget exceeded on tenant: 0 EMAILS remaining of 10 EMAILS" in denied[0]
        assert await emails(stack) == (10, 0)
        assert await audit(stack) == (10, 20, 10)
        assert await tool_calls(stack) == {"denied": 20, "result": 10}
        async with client(stack, "beta") as other:
            assert not (await other.call_tool("send_email", {"to": f"{to}-beta"})).is_error
        assert await emails(stack, "beta") == (1, 0)


async def test_a_tool_outside_the_plan_is_neither_listed_nor_callable(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    to = f"n-{secrets.token_hex(4)}"
    async with proxy(tmp_path, sse_upstream) as stack, client(stack, "slim") as mcp:
        assert [t.name for t in (await mcp.list_tools()).tools] == ["ping"]
        result = await mcp.call_tool("send_email", {"to": to})
        assert result.is_error
        assert "not available on plan 'narrow'" in text(result)
        assert sse_upstream.sent(to) == []
        assert await emails(stack, "slim") == (0, 0)


async def test_shadow_mode_forwards_all_and_reports_the_would_be_denials(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    to = f"s-{secrets.token_hex(4)}"
    async with proxy(tmp_path, sse_upstream) as stack, client(stack, "shady") as mcp:
        calls = [mcp.call_tool("send_email", {"to": f"{to}-{i}"}) for i in range(30)]
        results = await asyncio.gather(*calls)
        assert not any(r.is_error for r in results)
        assert len(sse_upstream.sent(to)) == 30
        assert await emails(stack, "shady") == (30, 0)
        trail = await stack.stores.tenants.audit("shady")
        would = [e for e in trail if e.kind == "reserve" and e.fields.get("would") == "DENY"]
        assert sum(int(e.fields.get("count", 1)) for e in would) == 20


@pytest.mark.parametrize(("rule", "spent"), [("reserved", 1), ("released", 0)])
async def test_an_iserror_result_settles_by_charge_on_error(
    tmp_path: Path, sse_upstream: Upstream, rule: str, spent: int
) -> None:
    async with proxy(tmp_path, sse_upstream, fail_rule=rule) as stack, client(stack) as mcp:
        result = await mcp.call_tool("fail", {})
        assert result.is_error
        assert await emails(stack) == (spent, 0)


async def test_a_protocol_error_releases_and_a_server_error_charges(
    tmp_path: Path, upstream: Upstream
) -> None:
    async with proxy(tmp_path, upstream) as stack, client(stack) as mcp:
        with pytest.raises(MCPError) as raised:
            await mcp.call_tool("protocol_error", {})
        assert raised.value.error.message == "no such argument"
        assert await emails(stack) == (0, 0)
        with pytest.raises(MCPError):
            await mcp.call_tool("crash", {})
        assert await emails(stack) == (1, 0)


async def test_a_timeout_charges_the_reservation(tmp_path: Path, sse_upstream: Upstream) -> None:
    async with proxy(tmp_path, sse_upstream, server_timeout=1) as stack, client(stack) as mcp:
        with pytest.raises(MCPError) as raised:
            await mcp.call_tool("slow", {"seconds": 3})
        assert "no answer within 1 s" in raised.value.error.message
        assert await emails(stack) == (1, 0)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_client_that_leaves_does_not_stop_the_settle(
    tmp_path: Path, sse_upstream: Upstream, mode: str
) -> None:
    """A legacy client cancels (the server answers -32800 and may have begun: charged by
    charge_on_error); a modern one just goes, and the proxy reads the answer on to settle it."""
    async with proxy(tmp_path, sse_upstream) as stack:
        done = sse_upstream.slow_done()
        async with client(stack, mode=mode) as mcp:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(mcp.call_tool("slow", {"seconds": 1}), 0.3)
        for _ in range(40):
            if (await emails(stack))[1] == 0:
                break
            await asyncio.sleep(0.1)
        assert await emails(stack) == (1, 0)
        if mode != "legacy":
            assert sse_upstream.slow_done() == done + 1


async def test_a_settle_while_the_store_is_down_is_spilled(
    tmp_path: Path, sse_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with proxy(tmp_path, sse_upstream) as stack, client(stack) as mcp:

        async def down(*args: object, **kwargs: object) -> None:
            raise LedgerUnavailable("store down (test)")

        monkeypatch.setattr(stack.ledger, "commit", down)
        result = await mcp.call_tool("send_email", {"to": f"d-{secrets.token_hex(4)}"})
        assert not result.is_error
        assert len(stack.app[FAIL_OPEN].spill) == 1
        assert await emails(stack) == (0, 1)


async def test_a_hide_rule_hides_a_tool_once_the_budget_runs_low(
    tmp_path: Path, upstream: Upstream
) -> None:
    to = f"h-{secrets.token_hex(4)}"
    async with proxy(tmp_path, upstream) as stack, client(stack, "care") as mcp:
        for i in range(6):
            assert not (await mcp.call_tool("send_email", {"to": f"{to}-{i}"})).is_error
            shown = {t.name for t in (await mcp.list_tools()).tools}
            assert ("send_email" in shown) == (i < 5)  # 4 of 10 left is below 50%
        result = await mcp.call_tool("send_email", {"to": f"{to}-late"})
        assert result.is_error
        assert "unavailable while the tenant budget is low" in text(result)
        assert len(upstream.sent(to)) == 6
        assert await emails(stack, "care") == (6, 0)


async def test_an_unpriced_tool_is_refused_when_the_server_denies_them(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    pings = sse_upstream.pings()
    async with proxy(tmp_path, sse_upstream, unpriced="deny") as stack, client(stack) as mcp:
        result = await mcp.call_tool("ping", {})
        assert result.is_error
        assert "has no price" in text(result) and "unpriced_tools: deny" in text(result)
        assert sse_upstream.pings() == pings
    async with proxy(tmp_path, sse_upstream) as stack, client(stack) as mcp:
        assert not (await mcp.call_tool("ping", {})).is_error
        assert sse_upstream.pings() == pings + 1
        assert await emails(stack) == (0, 0)


async def test_usage_events_name_the_server_and_tool(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    log = tmp_path / "usage.jsonl"
    sinks = f"events:\n  sinks:\n    - {{type: jsonl, path: '{log}'}}\n"
    async with (
        proxy(tmp_path, sse_upstream, fail_rule="released", extra=sinks) as stack,
        client(stack) as mcp,
    ):
        await mcp.call_tool("send_email", {"to": f"u-{secrets.token_hex(4)}"})
        await mcp.call_tool("fail", {})
        await eventually(lambda: log.exists() and len(log.read_bytes().splitlines()) == 2, "2")
    events = [orjson.loads(line)["data"] for line in log.read_bytes().splitlines()]
    seen = sorted((e["endpoint"], e["model"], e["outcome"]) for e in events)
    assert seen == [("mcp", "mcp:crm/fail", "released"), ("mcp", TOOL, "committed")]
    assert {e["tenant"] for e in events} == {"acme"}
    tools = sorted((e["tool"]["server"], e["tool"]["name"]) for e in events)
    assert tools == [("crm", "fail"), ("crm", "send_email")]


async def test_an_unreachable_ledger_refuses_the_call_before_the_server(
    tmp_path: Path, sse_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    to = f"r-{secrets.token_hex(4)}"
    async with proxy(tmp_path, sse_upstream) as stack, client(stack) as mcp:

        async def down(*args: object, **kwargs: object) -> None:
            raise LedgerUnavailable("store down (test)")

        monkeypatch.setattr(stack.ledger, "reserve", down)
        with pytest.raises(MCPError) as raised:
            await mcp.call_tool("send_email", {"to": to})
        assert "budget ledger is unreachable" in raised.value.error.message
        assert sse_upstream.sent(to) == []


async def test_tool_calls_count_as_steps_of_their_run(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    to = f"p-{secrets.token_hex(4)}"
    async with proxy(tmp_path, sse_upstream) as stack:
        async with client(stack, "steps", **{"X-Cycles-Run": "r1"}) as mcp:
            for i in range(3):
                assert not (await mcp.call_tool("send_email", {"to": f"{to}-{i}"})).is_error
            result = await mcp.call_tool("send_email", {"to": f"{to}-late"})
            assert result.is_error and "steps_per_run" in text(result)
        async with client(stack, "steps", **{"X-Cycles-Run": "r2"}) as mcp:
            assert not (await mcp.call_tool("send_email", {"to": f"{to}-r2"})).is_error
        assert len(sse_upstream.sent(to)) == 4
        assert await emails(stack, "steps") == (4, 0)
