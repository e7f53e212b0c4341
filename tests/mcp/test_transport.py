"""The MCP front's transport: the official mcp Client through /mcp/{server} in both protocol
eras against an MCPServer answering in JSON and in SSE; the headers that cross; refusals as
JSON-RPC errors before the server sees anything; sessions bound to the tenant that opened
them."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from mcp_support import TOKEN, TOKEN_ENV, Upstream, client, emails, proxy, sse_upstream, upstream

from proxy.testing.local import Stack

__all__ = ["sse_upstream", "upstream"]

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def post(
    stack: Stack, body: Any, tenant: str = "acme", raw: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else orjson.dumps(body)
    sent = {**ACCEPT, "X-Cycles-Tenant": tenant, **headers}
    async with (
        aiohttp.ClientSession() as http,
        http.post(stack.url + "/mcp/crm", data=data, headers=sent) as answer,
    ):
        text = await answer.read()
        if answer.content_type == "text/event-stream":
            line = next(x for x in text.splitlines() if x.startswith(b"data: {"))
            return answer.status, dict(answer.headers), orjson.loads(line[6:])
        return answer.status, dict(answer.headers), orjson.loads(text) if text else None


def initialize(message_id: int = 1) -> dict[str, Any]:
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}
    return {"jsonrpc": "2.0", "id": message_id, "method": "initialize", "params": params}


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28", "auto"])
async def test_initialize_list_and_call_through_the_proxy(
    tmp_path: Path, upstream: Upstream, mode: str
) -> None:
    to = f"t-{secrets.token_hex(4)}@x"
    async with proxy(tmp_path, upstream) as stack, client(stack, mode=mode) as mcp:
        listed = await mcp.list_tools()
        assert {"send_email", "ping", "fail", "slow"} <= {t.name for t in listed.tools}
        result = await mcp.call_tool("send_email", {"to": to})
        assert not result.is_error
        assert result.content[0].text == f"sent to {to}"  # type: ignore[union-attr]
        assert upstream.sent(to) == [to]
        assert await emails(stack) == (1, 0)


async def test_progress_passes_through_an_sse_answer(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    seen: list[float] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append(done)

    async with proxy(tmp_path, sse_upstream) as stack, client(stack) as mcp:
        result = await mcp.call_tool("progress", {"n": 3}, progress_callback=progress)
        assert not result.is_error
        assert seen == [1, 2, 3]
        assert await emails(stack) == (1, 0)


async def test_the_servers_credential_goes_up_and_the_clients_stay_behind(
    tmp_path: Path, sse_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    before = len(sse_upstream.headers())
    mine = {"Authorization": "Bearer client-key", "Cookie": "sid=1", "X-Api-Key": "k"}
    async with proxy(tmp_path, sse_upstream) as stack, client(stack, **mine) as mcp:
        await mcp.call_tool("ping", {})
    seen = sse_upstream.headers()[before:]
    assert seen
    for headers in seen:
        assert headers["authorization"] == f"Bearer {TOKEN}"
        assert not {"cookie", "x-api-key", "x-cycles-tenant"} & set(headers)


@pytest.mark.parametrize(
    ("raw", "headers", "code"),
    [
        (b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]', {}, -32600),
        (b"{nope", {}, -32700),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_email",'
            b'"arguments":{"to":"a"}}}',
            {"Mcp-Method": "tools/call", "Mcp-Name": "ping"},
            -32600,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping"}}',
            {"Mcp-Method": "tools/list"},
            -32600,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping",'
            b'"task":{"ttl":1000}}}',
            {},
            -32602,
        ),
    ],
)
async def test_refusals_are_jsonrpc_errors_before_the_server_sees_anything(
    tmp_path: Path, sse_upstream: Upstream, raw: bytes, headers: dict[str, str], code: int
) -> None:
    async with proxy(tmp_path, sse_upstream) as stack:
        before = len(sse_upstream.headers())
        status, _, body = await post(stack, None, raw=raw, **headers)
        assert status == 400
        assert body["error"]["code"] == code
        assert len(body["error"]["message"]) > 20
        assert len(sse_upstream.headers()) == before
        assert await emails(stack) == (0, 0)


async def test_an_unknown_server_is_the_proxys_404(tmp_path: Path, sse_upstream: Upstream) -> None:
    async with proxy(tmp_path, sse_upstream) as stack, aiohttp.ClientSession() as http:
        async with http.post(stack.url + "/mcp/nope", json={}, headers=ACCEPT) as answer:
            body = await answer.json()
        assert answer.status == 404
        assert body["error"]["code"] == "mcp_server_not_found"


async def test_a_session_is_404_for_any_other_tenant(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    async with proxy(tmp_path, sse_upstream) as stack:
        status, headers, _ = await post(stack, initialize())
        assert status == 200
        session = headers["mcp-session-id"]
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        with_session = {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
        ready = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await post(stack, ready, **with_session))[0] == 202
        before = len(sse_upstream.headers())
        status, _, body = await post(stack, listing, "beta", **with_session)
        assert status == 404
        assert body["error"]["code"] == -32600
        assert len(sse_upstream.headers()) == before  # the server never saw it
        status, _, body = await post(stack, listing, "acme", **with_session)
        assert status == 200 and "tools" in body["result"]
        async with aiohttp.ClientSession() as http:
            gone = {"X-Cycles-Tenant": "acme", **with_session}
            async with http.delete(stack.url + "/mcp/crm", headers=gone) as answer:
                assert answer.status == 200
        status, _, _ = await post(stack, listing, "acme", **with_session)
        assert status == 404


async def test_a_tool_call_carries_the_decision_headers(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call"}
    call["params"] = {"name": "send_email", "arguments": {"to": f"x-{secrets.token_hex(4)}"}}
    async with proxy(tmp_path, sse_upstream) as stack:
        status, headers, _ = await post(stack, initialize())
        session = {"Mcp-Session-Id": headers["mcp-session-id"]}
        await post(stack, {"jsonrpc": "2.0", "method": "notifications/initialized"}, **session)
        status, headers, body = await post(stack, call, **session)
        assert (status, body["result"]["isError"]) == (200, False)
        assert headers["X-Cycles-Decision"] == "ALLOW"
        assert headers["X-Cycles-Remaining"] == "9 EMAILS"
        async with client(stack) as mcp:
            for _ in range(9):
                await mcp.call_tool("send_email", {"to": "y"})
        status, headers, body = await post(stack, call, **session)
        assert (status, body["result"]["isError"]) == (200, True)
        assert headers["X-Cycles-Decision"] == "DENY"
        assert headers["X-Cycles-Remaining"] == "0 EMAILS"
        assert "Budget exceeded on tenant" in body["result"]["content"][0]["text"]
