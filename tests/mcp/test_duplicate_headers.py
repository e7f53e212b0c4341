"""Routing and session headers sent twice are refused (400, a JSON-RPC error) before the
server sees them: the proxy checks one value, and a server or gateway reading another copy (the
last, or a joined "a, b") would act on a call or a session the proxy did not check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
from mcp_support import Upstream, proxy, sse_upstream
from multidict import CIMultiDict

from proxy.testing.local import Stack

__all__ = ["sse_upstream"]

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def initialize() -> dict[str, Any]:
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}


async def post(stack: Stack, body: Any, headers: CIMultiDict[str]) -> tuple[int, CIMultiDict[str]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(stack.url + "/mcp/crm", data=orjson.dumps(body), headers=headers) as answer,
    ):
        await answer.read()
        return answer.status, CIMultiDict(answer.headers)


async def opened(stack: Stack, tenant: str) -> str:
    base = CIMultiDict({**ACCEPT, "X-Cycles-Tenant": tenant})
    status, headers = await post(stack, initialize(), base)
    assert status == 200
    session = headers["Mcp-Session-Id"]
    base["Mcp-Session-Id"] = session
    ready = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await post(stack, ready, base))[0] == 202
    return session


async def test_a_second_mcp_name_header_is_refused_not_forwarded(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "ping"}}
    async with proxy(tmp_path, sse_upstream) as stack:
        session = await opened(stack, "acme")
        headers = CIMultiDict({**ACCEPT, "X-Cycles-Tenant": "acme", "Mcp-Session-Id": session})
        headers.add("Mcp-Method", "tools/call")
        headers.add("Mcp-Name", "ping")  # what the body says: checked
        headers.add("Mcp-Name", "send_email")  # never checked, forwarded to the server
        before = len(sse_upstream.headers())
        status, _ = await post(stack, call, headers)
        # The proxy must refuse an ambiguous routing header (or forward only the checked one).
        seen = sse_upstream.headers()[before:]
        assert status == 400, f"forwarded with two Mcp-Name headers (status {status})"
        assert seen == []


async def test_a_second_session_header_is_refused_not_forwarded(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    async with proxy(tmp_path, sse_upstream) as stack:
        mine = await opened(stack, "acme")
        theirs = await opened(stack, "beta")  # another tenant's session
        headers = CIMultiDict({**ACCEPT, "X-Cycles-Tenant": "acme"})
        headers.add("Mcp-Session-Id", mine)  # checked: acme's
        headers.add("Mcp-Session-Id", theirs)  # beta's: never checked, forwarded
        before = len(sse_upstream.headers())
        status, _ = await post(stack, listing, headers)
        seen = sse_upstream.headers()[before:]
        assert status in (400, 404), f"forwarded with two session ids (status {status})"
        assert seen == []
