"""An MCP server's SSE answer to a tools/call is bounded by `limits.max_answer_bytes`: the
proxy's SSE decoder keeps an event's bytes until its blank line, so one event that never ends
(or is gigabytes long) would grow the proxy's memory until `timeout_seconds` passes. The relay
ends the call as failed as soon as the stream is over the limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from conftest import free_port
from mcp_support import Upstream, emails, proxy

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
LIMIT = 1024 * 1024


@asynccontextmanager
async def endless_event_server(tmp_path: Path) -> AsyncIterator[Upstream]:
    """A server answering any POST with an SSE stream whose one event never ends: 16 MiB of
    data with no blank line, then silence."""

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        answer = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await answer.prepare(request)
        await answer.write(b"event: message\ndata: ")
        chunk = b"x" * 65536
        for _ in range(256):
            await answer.write(chunk)
        await asyncio.sleep(25)
        return answer

    app = web.Application()
    app.router.add_post("/mcp", handle)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield Upstream(f"http://127.0.0.1:{port}/mcp", tmp_path, "sse")
    finally:
        await runner.cleanup()


async def test_an_sse_event_over_max_answer_bytes_ends_the_call(tmp_path: Path) -> None:
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call"}
    call["params"] = {"name": "send_email", "arguments": {"to": "a@x"}}
    extra = f"limits:\n  max_answer_bytes: {LIMIT}\n"
    async with (
        endless_event_server(tmp_path) as up,
        proxy(tmp_path, up, server_timeout=20, extra=extra) as stack,
    ):
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=12)
        headers = {**ACCEPT, "X-Cycles-Tenant": "acme"}
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.post(stack.url + "/mcp/crm", data=orjson.dumps(call), headers=headers) as a,
            ):
                await a.read()
        except TimeoutError:
            pass
        took = time.monotonic() - started
        # 16 MiB of one event against a 1 MiB limit: the proxy should give up at once, not hold
        # it all in memory until the server's 20 s timeout.
        assert took < 8, f"the proxy buffered the endless event for {took:.1f} s"
        assert (await emails(stack))[1] == 0  # settled, not still held
