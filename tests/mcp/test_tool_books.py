"""Tool calls in the books every call is in: one `cycles.calls` line each (server, tool, price
key, decision, amounts, outcome), the request and in-flight metrics with a bounded tool label,
and the alerts (a threshold crossed on an EMAILS line, a period's first deny) named by their
unit."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from alerts_support import fast_retries, quiet, receiver
from mcp_support import Upstream, client, emails, proxy, sse_upstream
from prometheus_client.parser import text_string_to_metric_families
from support import eventually

from proxy.testing.local import Stack

__all__ = ["fast_retries", "sse_upstream"]

TOOL = "mcp:crm/send_email"


def tool_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "cycles.calls"]
    return [line for line in lines if line.get("endpoint") == "mcp"]


async def metric(stack: Stack, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`, from /metrics."""
    async with aiohttp.ClientSession() as http, http.get(stack.url + "/metrics") as answer:
        text = await answer.text()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_each_tool_call_is_one_call_line_counted_like_every_call(
    tmp_path: Path, sse_upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cycles.calls")
    to = f"b-{secrets.token_hex(4)}"
    async with proxy(tmp_path, sse_upstream) as stack:
        async with client(stack) as mcp:
            await mcp.list_tools()
            results = [await mcp.call_tool("send_email", {"to": f"{to}-{i}"}) for i in range(11)]
            assert [r.is_error for r in results] == [False] * 10 + [True]
            assert not (await mcp.call_tool("ping", {})).is_error
        async with client(stack, "slim") as slim:
            assert (await slim.call_tool("send_email", {"to": to})).is_error
        assert await emails(stack) == (10, 0)
        lines = tool_lines(caplog)
        assert len(lines) == 13
        assert not [r for r in caplog.records if "mcp_tool_call" in r.getMessage()]
        allowed, denied, ping, hidden = lines[0], lines[10], lines[11], lines[12]
        assert {k: allowed[k] for k in ("server", "tool", "price", "model", "tenant")} == {
            "server": "crm",
            "tool": "send_email",
            "price": TOOL,
            "model": TOOL,
            "tenant": "acme",
        }
        assert (allowed["decision"], allowed["outcome"], allowed["status"]) == (
            "ALLOW",
            "result",
            200,
        )
        assert (allowed["estimate"], allowed["actual"]) == ({"EMAILS": 1}, {"EMAILS": 1})
        assert (denied["decision"], denied["outcome"], denied["actual"]) == ("DENY", "denied", None)
        assert denied["estimate"] == {"EMAILS": 1}
        assert (ping["tool"], ping["price"], ping["decision"], ping["outcome"]) == (
            "ping",
            None,
            "ALLOW",
            "result",
        )
        assert (hidden["tenant"], hidden["decision"], hidden["outcome"]) == (
            "slim",
            "DENY",
            "hidden",
        )
        requests = "cycles_requests_total"
        assert await metric(stack, requests, endpoint="mcp", model=TOOL, decision="ALLOW") == 10
        assert await metric(stack, requests, endpoint="mcp", model=TOOL, decision="DENY") == 2
        assert await metric(stack, requests, endpoint="mcp", model="other") == 1
        assert await metric(stack, requests, endpoint="mcp", model="mcp:crm/ping") == 0
        assert await metric(stack, "cycles_tenant_requests_total", tenant="slim") == 1
        assert await metric(stack, "cycles_reserved_units_total", unit="EMAILS") == 10
        assert await metric(stack, "cycles_committed_units_total", unit="EMAILS") == 10
        unpriced = await metric(stack, "cycles_tool_calls_total", tool="unpriced", outcome="result")
        assert unpriced == 1
        assert await metric(stack, "cycles_tool_calls_total", tool=TOOL, outcome="hidden") == 1


async def test_a_tool_call_is_in_flight_until_it_settles(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    async with proxy(tmp_path, sse_upstream) as stack, client(stack) as mcp:
        slow = asyncio.ensure_future(mcp.call_tool("slow", {"seconds": 1.5}))

        async def one_in_flight() -> bool:
            return await metric(stack, "cycles_in_flight") == 1

        await eventually(one_in_flight, "the slow tool call in flight")
        assert not (await slow).is_error
        await quiet()
        assert await metric(stack, "cycles_in_flight") == 0
        assert await emails(stack) == (1, 0)


ALERTS = """
alerts:
  thresholds: ["50%", "80%", "100%"]
  webhooks:
    - {{url: {url!r}, secret_env: CYCLES_ALERT_SECRET}}
"""


async def test_tool_calls_alert_on_their_units_line(tmp_path: Path, sse_upstream: Upstream) -> None:
    to = f"a-{secrets.token_hex(4)}"
    async with receiver() as (hook, url):
        extra = ALERTS.format(url=url)
        async with proxy(tmp_path, sse_upstream, extra=extra) as stack, client(stack) as mcp:
            for i in range(8):
                assert not (await mcp.call_tool("send_email", {"to": f"{to}-{i}"})).is_error
            await quiet()
            crossed = [(e["threshold"], e["unit"], e["spent"], e["limit"]) for e in hook.accepted]
            assert crossed == [("50%", "EMAILS", 5, 10), ("80%", "EMAILS", 8, 10)]
            for i in range(4):
                await mcp.call_tool("send_email", {"to": f"{to}-more-{i}"})
            await quiet()
            assert await emails(stack) == (10, 0)
        kinds = [(e["type"], e["unit"], e["level"], e["tenant"]) for e in hook.accepted[2:]]
        assert kinds == [
            ("budget.threshold", "EMAILS", "tenant", "acme"),
            ("budget.first_deny", "EMAILS", "tenant", "acme"),
        ]
        assert hook.accepted[2]["threshold"] == "100%"
