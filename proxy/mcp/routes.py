"""The handlers of `/mcp/{server}`: identify the caller, check the message, then relay it (a
tool call through its budget: calls.py, observed as one budgeted call: its call line).
Every refusal past the route itself answers with a JSON-RPC error body at its HTTP status,
which MCP clients raise with its message; an unknown server is the proxy's usual 404."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.core.errors import ClientError, NotFound
from proxy.gateway.admission import ADMISSION
from proxy.gateway.context import SESSION
from proxy.mcp import calls, forward, inflight, jsonrpc, listing, sessions
from proxy.mcp.forward import Hop
from proxy.mcp.jsonrpc import INTERNAL_ERROR, INVALID_REQUEST, RpcRefusal
from proxy.policy.tools import McpServer

PATH = "/mcp/{server}"


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(PATH, post)
    router.add_get(PATH, get)
    router.add_delete(PATH, delete)


async def post(request: web.Request) -> web.StreamResponse:
    """The session checked and the request's id held in it while it runs (inflight.py)."""
    message_id: Any = None
    server = _server(request)
    try:
        hop = await _hop(request, server)
        raw = await hop.admission.body(request, hop.admission.policy.limits.max_body_bytes)
        message = jsonrpc.parse(raw)
        message_id = message.id
        jsonrpc.check_routing(request.headers, message)
        async with inflight.holding(hop, message):
            return await _relayed(hop, message, raw)
    except RpcRefusal as refusal:
        return refused(refusal)
    except ClientError as exc:
        return client_error(exc, message_id)


async def _relayed(hop: Hop, message: jsonrpc.Message, raw: bytes) -> web.StreamResponse:
    if message.method == "tools/call":
        return await hop.admission.observed(hop.request, "mcp", _tool_call(hop, message, raw))
    on_answer = sessions.binder(hop) if message.method == "initialize" else None
    rewrite = await listing.rewrite(hop) if message.method == "tools/list" else None
    return await forward.post(hop, raw, message.id, rewrite, on_answer)


async def _tool_call(hop: Hop, message: jsonrpc.Message, raw: bytes) -> web.StreamResponse:
    """A tools/call, its refusals answered here so that its call line has their status."""
    try:
        return await calls.call(hop, message, raw)
    except RpcRefusal as refusal:
        return refused(refusal)
    except ClientError as exc:
        return client_error(exc, message.id)


async def get(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    try:
        hop = await _hop(request, server)
        await sessions.check(hop)
        return await forward.get(hop)
    except RpcRefusal as refusal:
        return refused(refusal)
    except ClientError as exc:
        return client_error(exc, None)


async def delete(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    try:
        hop = await _hop(request, server)
        await sessions.check(hop)
        answer = await forward.delete(hop)
        await sessions.forget(hop)
        return answer
    except RpcRefusal as refusal:
        return refused(refusal)
    except ClientError as exc:
        return client_error(exc, None)


def _server(request: web.Request) -> McpServer:
    """The server the path names; 404 (the proxy's usual error) before anything else when the
    policy lists none by that name."""
    servers = request.app[ADMISSION].policy.mcp_servers
    name = request.match_info["server"]
    server = servers.get(name)
    if server is None:
        raise NotFound(
            f"No MCP server {name!r}: the policy's mcp_servers lists "
            f"{', '.join(servers) or 'none'}.",
            code="mcp_server_not_found",
        )
    return server


async def _hop(request: web.Request, server: McpServer) -> Hop:
    """Who calls, on the way to `server`; RpcRefusal for a routing header sent twice."""
    jsonrpc.check_single(request.headers)
    admission = request.app[ADMISSION]
    scope = await admission.identify(request)
    return Hop(request, admission, request.app[SESSION], server, scope)


def refused(refusal: RpcRefusal) -> web.Response:
    body = jsonrpc.error_body(refusal.id, refusal.code, refusal.message)
    return web.Response(
        body=body, status=refusal.status, content_type="application/json", headers=refusal.headers
    )


def client_error(exc: ClientError, message_id: Any) -> web.Response:
    """A proxy error (identity, the tenant's standing, the store) as a JSON-RPC error body at
    its status, with its headers; its type and code in `data`."""
    code = INTERNAL_ERROR if exc.status >= 500 else INVALID_REQUEST
    data = {"type": exc.type, "code": exc.code}
    body = jsonrpc.error_body(message_id, code, exc.message, data)
    return web.Response(
        body=body, status=exc.status, content_type="application/json", headers=exc.headers
    )
