"""The request ids in flight in each MCP session, so that no two share one.

The mcp SDK's stateful server files a POST's answer stream under `str(id)` in its session: a
second request with an id in flight there (7 and "7" alike) takes over the first's answer, and
the first POST waits out `timeout_seconds`, a tool call then settled as a timeout (which a
`charge_on_error: released` tool releases, though it ran). So a request whose `str(id)` is in
flight in its session is refused (409) before anything is reserved or sent, whatever its method:
the first may be a tools/call and the second a ping. A request without a session cannot collide:
the SDK gives each its own transport (its stateless mode, and every request of the 2026-07-28
era).

The ids are claimed in the shared store (store/mcp_sessions.py), so the check holds across every
replica on it, in the same round trip as the session check (`holds_claiming`). A claim lives the
server's timeout and CLAIM_MARGIN_MS, so a crashed proxy's expires by itself; it is freed when its
handler ends with the server done with the id (its answer, an HTTP answer, or never sent), which
for a tool call is after its settle. When the handler ends while the server may still run the id
(no answer within the timeout, the exchange broken after sending or ended without the answer:
Hop.unanswered; or the handler ended by anything but a refusal, e.g. cancelled), the claim is
left to its TTL: a request reusing the id meanwhile would take over the late answer. Each claim
holds a token of its own and is freed only while it still holds it (store/mcp_sessions.py). The
store unreachable at the claim is the 503 of any store operation; at the free, the claim is left
to expire (logged)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

from proxy.core.errors import ClientError
from proxy.gateway.context import MCP_SESSIONS
from proxy.mcp import sessions
from proxy.mcp.forward import Hop
from proxy.mcp.jsonrpc import INTERNAL_ERROR, Message, RpcRefusal
from proxy.store.mcp_sessions import ClaimsFull

log = logging.getLogger(__name__)

CLAIM_MARGIN_MS = 60_000
"""A claim outlives the server's timeout by this much: the reserve before the relay, the settle
and the last write after it."""


@asynccontextmanager
async def holding(hop: Hop, message: Message) -> AsyncIterator[None]:
    """The session checked (sessions.check) and, for a request with an id in a session, its id
    held while the body runs: RpcRefusal 409 when another request holds it."""
    session = hop.request.headers.get(sessions.HEADER)
    if session is None or not message.is_request or message.id is None:
        await sessions.check(hop)
        yield
        return
    store, request_id = hop.request.app[MCP_SESSIONS], str(message.id)
    where = (hop.scope.tenant, hop.server.name, session)
    ttl_ms = hop.server.timeout_ms + CLAIM_MARGIN_MS
    token = secrets.token_hex(8)
    checking = store.holds_claiming(*where, sessions.TTL_MS, request_id, ttl_ms, token)
    try:
        held, claimed = await hop.admission.store_op("session lookup", checking)
    except ClaimsFull:
        full = RpcRefusal(
            "The proxy holds as many MCP request ids in flight as it keeps (memory:// store); "
            "nothing was sent or charged. Retry once some calls have finished.",
            code=INTERNAL_ERROR,
            status=503,
        )
        full.id = message.id
        raise full from None
    if not held:
        raise sessions.not_found()
    if not claimed:
        refusal = RpcRefusal(
            f"Request id {message.id!r} is already in flight in this session: give each "
            "request an id of its own (the server files answers under the id as a string).",
            status=409,
        )
        refusal.id = message.id
        raise refusal
    ended_well = False
    try:
        yield
        ended_well = True
    except (ClientError, RpcRefusal):
        ended_well = True
        raise
    finally:
        if ended_well and not hop.unanswered.server_may_run:
            await _free(hop, store.free(*where, request_id, token), ttl_ms)
        else:
            log.info("An MCP request id stays claimed for its TTL: the server may still run it.")


async def _free(hop: Hop, freeing: Awaitable[None], ttl_ms: int) -> None:
    """The claim freed; the store unreachable leaves it to expire (logged)."""
    try:
        await hop.admission.store_op("request id free", freeing)
    except ClientError:
        log.warning(
            "An MCP request id could not be freed (the store is unreachable): it stays "
            "claimed for %d ms.",
            ttl_ms,
        )
