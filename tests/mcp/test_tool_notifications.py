"""A tools/call with no id, or a null id, is a notification to the server: it answers 202
and never runs the tool, so a proxy that budgeted it would charge (FAILED, charge_on_error) for
a tool that never ran. It is refused (400) before anything is reserved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from mcp_support import Upstream, emails, proxy, upstream

from proxy.testing.local import Stack

__all__ = ["upstream"]

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def post(stack: Stack, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(stack.url + "/mcp/crm", data=orjson.dumps(body), headers=headers) as answer,
    ):
        await answer.read()
        return answer.status, {k.lower(): v for k, v in answer.headers.items()}


@pytest.mark.parametrize("id_field", [{}, {"id": None}], ids=["no-id", "null-id"])
async def test_a_tools_call_notification_is_refused_not_charged(
    tmp_path: Path, upstream: Upstream, id_field: dict[str, Any]
) -> None:
    async with proxy(tmp_path, upstream) as stack:
        base = {**ACCEPT, "X-Cycles-Tenant": "acme"}
        params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
        _, headers = await post(stack, init, base)
        session = {**base, "Mcp-Session-Id": headers["mcp-session-id"]}
        session["MCP-Protocol-Version"] = "2025-11-25"
        await post(stack, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        to = f"notification-{'null' if id_field else 'none'}@x"
        call = {"jsonrpc": "2.0", **id_field, "method": "tools/call"}
        call["params"] = {"name": "send_email", "arguments": {"to": to}}
        status, _ = await post(stack, call, session)
        assert upstream.sent(to) == []  # the server never ran it
        assert await emails(stack) == (0, 0), f"charged for a tool that never ran (HTTP {status})"
        assert status == 400
