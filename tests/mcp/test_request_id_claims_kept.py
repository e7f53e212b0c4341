"""ADV4 (second test, low): the opposite direction. A JSON answer larger than max_answer_bytes
is Broken, so the flag is set and id 7 stays claimed for timeout + 60 s, though the server
ANSWERED (it is done with the id): a retry with the same id is refused 409 needlessly.

First test: Hop.unanswered.server_may_run is set on a timeout and on a broken exchange, but not when
the server's SSE stream ENDS CLEANLY WITHOUT THE ANSWER. Since MCP 2025-11-25 (SEP-1699) a server
may send a priming event (an event id) and close the stream while it still runs the request; the
answer comes later on a resumed stream, filed under the request's id. The proxy settles the call
as FAILED, frees id 7, and a second tools/call with id 7 is sent at once: it would take over the
first's late answer (the very case the kept claim is for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from conftest import free_port
from mcp_support import POLICY

from proxy.policy import load_policy
from proxy.testing.local import local_stack

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def fake_server() -> tuple[web.AppRunner, str, list[Any]]:
    calls: list[Any] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        message = orjson.loads(await request.read())
        if "id" not in message:
            return web.Response(status=202)
        if message["method"] == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                      "serverInfo": {"name": "fake", "version": "1"}}
            body = orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
            return web.Response(body=body, content_type="application/json",
                                headers={"Mcp-Session-Id": "sess-1"})
        calls.append(message["id"])
        # Priming event, then the stream is closed: the server goes on running the request.
        stream = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        await stream.write(b"id: ev-1\r\nretry: 1000\r\ndata: \r\n\r\n")
        await stream.write_eof()
        return stream

    app = web.Application()
    app.router.add_post("/mcp", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/mcp", calls


async def post(url: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.post(
        url, data=orjson.dumps(body), headers=headers
    ) as answer:
        return answer.status, dict(answer.headers), await answer.read()


async def test_an_id_whose_stream_closed_before_the_answer_stays_claimed(tmp_path: Path) -> None:
    runner, url, calls = await fake_server()
    try:
        path = tmp_path / "policy.yaml"
        path.write_text(POLICY.format(url=url, timeout=10, fail_rule="reserved", unpriced="allow"))
        async with local_stack(load_policy(path), sweep_every=None) as stack:
            front = stack.url + "/mcp/crm"
            base = {**ACCEPT, "X-Cycles-Tenant": "acme"}
            params = {"protocolVersion": "2025-11-25", "capabilities": {},
                      "clientInfo": {"name": "t"}}
            status, headers, _ = await post(
                front, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}, base
            )
            assert status == 200, headers
            session = {**base, "Mcp-Session-Id": headers["Mcp-Session-Id"],
                       "MCP-Protocol-Version": "2025-11-25"}
            call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                    "params": {"name": "long_job", "arguments": {}}}
            first = await post(front, call, session)
            assert calls == [7], first
            second = await post(front, call, session)
            assert second[0] == 409 and calls == [7], (
                f"id 7 reused while the server may still run it: answered {second[0]}, "
                f"the server got ids {calls}"
            )
    finally:
        await runner.cleanup()


async def test_an_answered_but_oversized_json_answer_frees_its_id(tmp_path: Path) -> None:
    calls: list[Any] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        message = orjson.loads(await request.read())
        if "id" not in message:
            return web.Response(status=202)
        if message["method"] == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                      "serverInfo": {"name": "fake", "version": "1"}}
            body = orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
            return web.Response(body=body, content_type="application/json",
                                headers={"Mcp-Session-Id": "sess-1"})
        calls.append(message["id"])
        text = "x" * (4000 if len(calls) == 1 else 10)
        result = {"content": [{"type": "text", "text": text}]}
        body = orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/mcp", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        path = tmp_path / "policy.yaml"
        text = POLICY.format(url=url, timeout=10, fail_rule="reserved", unpriced="allow")
        path.write_text(text + "limits: {max_answer_bytes: 2000}\n")
        async with local_stack(load_policy(path), sweep_every=None) as stack:
            front = stack.url + "/mcp/crm"
            base = {**ACCEPT, "X-Cycles-Tenant": "acme"}
            params = {"protocolVersion": "2025-11-25", "capabilities": {},
                      "clientInfo": {"name": "t"}}
            status, headers, _ = await post(
                front, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}, base
            )
            assert status == 200, headers
            session = {**base, "Mcp-Session-Id": headers["Mcp-Session-Id"],
                       "MCP-Protocol-Version": "2025-11-25"}
            call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                    "params": {"name": "big", "arguments": {}}}
            first = await post(front, call, session)
            assert first[0] == 502, first
            second = await post(front, call, session)
            assert second[0] == 200, f"the server answered id 7, yet its retry got {second[0]}"
    finally:
        await runner.cleanup()
