"""The GET event stream when the server answers it with a JSON body instead of a stream: the
body is read within the server's timeout and bounded, a body over limits.max_answer_bytes (or
cut off) is a JSON-RPC error (502), and one that never finishes is cut at timeout_seconds
(504)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from conftest import free_port
from mcp_support import Upstream, proxy

LIMIT = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def server_answering_get(tmp_path: Path, handle: Handler) -> AsyncIterator[Upstream]:
    app = web.Application()
    app.router.add_get("/mcp", handle)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Upstream(f"http://127.0.0.1:{port}/mcp", tmp_path, "json")
    finally:
        await runner.cleanup()


async def get(url: str, total: float = 15) -> tuple[int, bytes]:
    headers = {"Accept": "text/event-stream", "X-Cycles-Tenant": "acme"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=total)) as http,
        http.get(url + "/mcp/crm", headers=headers) as answer,
    ):
        return answer.status, await answer.read()


async def test_a_json_answer_to_get_over_the_limit_is_a_jsonrpc_error_not_a_500(
    tmp_path: Path,
) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        error = {"code": -32600, "message": "x" * (2 * LIMIT)}
        body = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": error})
        return web.Response(body=body, status=405, content_type="application/json")

    extra = f"limits:\n  max_answer_bytes: {LIMIT}\n"
    async with (
        server_answering_get(tmp_path, handle) as up,
        proxy(tmp_path, up, server_timeout=5, extra=extra) as stack,
    ):
        status, body = await get(stack.url)
        assert status == 502, (status, body[:200])
        assert orjson.loads(body)["error"]["code"] == -32603


async def test_a_get_answer_whose_body_never_ends_is_cut_at_the_servers_timeout(
    tmp_path: Path,
) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        answer.content_length = 1000
        await answer.prepare(request)
        await answer.write(b'{"jsonrpc":')
        await asyncio.sleep(12)
        if request.transport is not None:
            request.transport.close()  # end the test's connection (the proxy would wait on)
        return answer

    async with (
        server_answering_get(tmp_path, handle) as up,
        proxy(tmp_path, up, server_timeout=2) as stack,
    ):
        started = time.monotonic()
        try:
            status, _ = await get(stack.url, total=10)
        except TimeoutError:
            status = -1
        took = time.monotonic() - started
        assert took < 6, f"the GET hung {took:.1f} s past the server's 2 s timeout"
        assert status == 504
