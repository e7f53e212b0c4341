"""Sessions bound to the tenant that opened them: the `Mcp-Session-Id` a server returns is
bound to the caller's tenant (store/mcp_sessions.py), and a request presenting a session id its
tenant did not bind is 404 before anything reaches the server (as the server itself answers an
unknown session: its client starts a new one). DELETE forgets it."""

from __future__ import annotations

import aiohttp

from proxy.gateway.context import MCP_SESSIONS
from proxy.mcp.forward import Hop, OnAnswer
from proxy.mcp.jsonrpc import RpcRefusal

HEADER = "Mcp-Session-Id"
TTL_MS = 60 * 60 * 1000
"""A binding lives an hour past its last use; a client idle longer starts a new session."""


async def check(hop: Hop) -> None:
    """404 (a JSON-RPC error) unless the caller's tenant bound the session it presents."""
    session = hop.request.headers.get(HEADER)
    if session is None:
        return
    store = hop.request.app[MCP_SESSIONS]
    holding = store.holds(hop.scope.tenant, hop.server.name, session, TTL_MS)
    if not await hop.admission.store_op("session lookup", holding):
        raise not_found()


def not_found() -> RpcRefusal:
    return RpcRefusal(
        "Session not found: this session was not opened by this tenant through this proxy, "
        "or it ended. Start a new session (initialize).",
        status=404,
    )


def binder(hop: Hop) -> OnAnswer:
    """What binds the session an initialize answer opens to the caller's tenant."""

    async def bind(answer: aiohttp.ClientResponse) -> None:
        session = answer.headers.get(HEADER)
        if session is None or answer.status >= 300:
            return
        store = hop.request.app[MCP_SESSIONS]
        binding = store.bind(hop.scope.tenant, hop.server.name, session, TTL_MS)
        await hop.admission.store_op("session bind", binding)

    return bind


async def forget(hop: Hop) -> None:
    session = hop.request.headers.get(HEADER)
    if session is not None:
        store = hop.request.app[MCP_SESSIONS]
        await hop.admission.store_op(
            "session forget", store.forget(hop.scope.tenant, hop.server.name, session)
        )
