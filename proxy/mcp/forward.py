"""Relaying what is not a tool call: a POST's answer (JSON or SSE, tools/list filtered on the
way), the GET event stream, DELETE. Every exchange with the server is bounded by its
`timeout_seconds` (a GET stream by the client and the server only: it lives as long as the
session)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict

from proxy.budget.scopes import Scope
from proxy.gateway.admission import Admission
from proxy.mcp import jsonrpc, upstream
from proxy.mcp.jsonrpc import INTERNAL_ERROR, RpcRefusal
from proxy.mcp.outcome import answers
from proxy.policy.tools import McpServer

OnAnswer = Callable[[aiohttp.ClientResponse], Awaitable[None]]


@dataclass(slots=True)
class Unanswered:
    """Whether the proxy gave up on the request while the server may still run it (no answer
    within the timeout, the exchange broken after it was sent, or ended without the answer):
    its id then stays claimed to the claim's TTL rather than freed (inflight.py). A JSON
    answer too large to hold (upstream.TooLarge) is an answer: the server is done with it."""

    server_may_run: bool = False


@dataclass(frozen=True, slots=True)
class Hop:
    """One client request on its way to one MCP server."""

    request: web.Request
    admission: Admission
    session: aiohttp.ClientSession
    server: McpServer
    scope: Scope
    extra: Mapping[str, str] = field(default_factory=dict)
    """Headers the proxy adds to the answer (a tool call's X-Cycles-*)."""
    unanswered: Unanswered = field(default_factory=Unanswered)
    """Shared by the hop's copies (dataclasses.replace keeps the object)."""

    @property
    def seconds(self) -> float:
        return self.server.timeout_ms / 1000

    @property
    def write_s(self) -> float:
        return self.admission.policy.timeouts.client_write

    def headers(self) -> CIMultiDict[str]:
        """Allow-listed client headers and the server's credential, read from its `token_env`
        when the request goes (a rotated secret needs no restart)."""
        env = self.server.token_env
        token = os.environ.get(env) if env else None
        return upstream.headers_up(self.request.headers, token, self.server.auth)

    async def send(self, body: bytes | None) -> aiohttp.ClientResponse:
        timeouts = self.admission.policy.timeouts
        method, url = self.request.method, self.server.url
        return await upstream.send(
            self.session, method, url, self.headers(), body, timeouts.connect
        )


def failed(reason: str, message_id: Any = None, *, status: int = 502) -> RpcRefusal:
    """What the client gets when the server could not answer."""
    refusal = RpcRefusal(f"MCP server: {reason}.", code=INTERNAL_ERROR, status=status)
    refusal.id = message_id
    return refusal


@dataclass(slots=True)
class Pending:
    """The client's response once it is prepared: after that, a failure can only end the
    stream, never answer with an error of its own."""

    client: web.StreamResponse | None = None


async def relay_answer(
    hop: Hop,
    answer: aiohttp.ClientResponse,
    message_id: Any,
    pending: Pending,
    rewrite: upstream.Rewrite | None = None,
) -> tuple[web.StreamResponse, dict[str, Any] | None]:
    """The server's answer relayed to the client, and the message that answers `message_id`
    (None: none came). A JSON body is read whole (bounded), an SSE stream relayed event by
    event; `rewrite` may replace messages on the way."""
    headers = upstream.headers_down(answer.headers.items())
    headers.update(hop.extra)
    limit = hop.admission.policy.limits.max_answer_bytes
    if upstream.is_stream(answer) and answer.status < 300:
        client = pending.client = web.StreamResponse(status=answer.status, headers=headers)
        await client.prepare(hop.request)
        bounds = (hop.write_s, limit)
        seen = await upstream.relay_events(answer, client, message_id, bounds, rewrite)
        return client, seen.answer
    body, parsed = await upstream.read_json(answer, limit)
    replaced = rewrite(parsed) if rewrite is not None and parsed is not None else None
    if replaced is not None:
        body, parsed = orjson.dumps(replaced), replaced
    found = parsed if parsed is not None and answers(parsed, message_id) else None
    return web.Response(body=body, status=answer.status, headers=headers), found


async def post(
    hop: Hop,
    raw: bytes | None,
    message_id: Any,
    rewrite: upstream.Rewrite | None = None,
    on_answer: OnAnswer | None = None,
) -> web.StreamResponse:
    """A POST that is not a tool call: relayed, within the server's timeout."""
    pending = Pending()
    try:
        async with asyncio.timeout(hop.seconds):
            async with await hop.send(raw) as answer:
                if on_answer is not None:
                    await on_answer(answer)
                client, found = await relay_answer(hop, answer, message_id, pending, rewrite)
                if message_id is not None:
                    note_unanswered(hop, answer.status, found)
                return client
    except TimeoutError:
        hop.unanswered.server_may_run = True
        refusal = failed(f"no answer within {hop.seconds:g} s", message_id, status=504)
    except (upstream.Unreachable, upstream.TooLarge) as exc:
        refusal = failed(str(exc), message_id)
    except upstream.Broken as exc:
        hop.unanswered.server_may_run = True
        refusal = failed(str(exc), message_id)
    return await ended(hop, pending, refusal)


def note_unanswered(hop: Hop, status: int, found: dict[str, Any] | None) -> None:
    """An exchange that ended (not an HTTP error) without the answer to the request: the server
    may still run it (since MCP 2025-11-25 a server may close a stream after a priming event
    and answer on a resumed one), so its id stays claimed (Unanswered)."""
    if found is None and status < 400:
        hop.unanswered.server_may_run = True


async def ended(hop: Hop, pending: Pending, refusal: RpcRefusal) -> web.StreamResponse:
    """No answer will come: `refusal` as the answer, or, when a stream to the client began, as
    its last event (a JSON-RPC error for the request)."""
    if pending.client is None:
        raise refusal
    body = jsonrpc.error_body(refusal.id, refusal.code, refusal.message)
    await upstream.write(pending.client, upstream.sse_event(body), hop.write_s)
    return pending.client


async def get(hop: Hop) -> web.StreamResponse:
    """The server-to-client event stream, relayed as bytes while both sides keep it; a JSON
    answer instead is read whole (bounded) within the server's timeout, as a POST's is."""
    try:
        async with asyncio.timeout(hop.seconds):
            answer = await hop.send(None)
            if not upstream.is_stream(answer):
                async with answer:
                    limit = hop.admission.policy.limits.max_answer_bytes
                    body, _ = await upstream.read_json(answer, limit)
                    headers = upstream.headers_down(answer.headers.items())
                    return web.Response(body=body, status=answer.status, headers=headers)
    except TimeoutError:
        raise failed(f"no answer within {hop.seconds:g} s", status=504) from None
    except (upstream.Unreachable, upstream.Broken) as exc:
        raise failed(str(exc)) from None
    async with answer:
        headers = upstream.headers_down(answer.headers.items())
        client = web.StreamResponse(status=answer.status, headers=headers)
        await client.prepare(hop.request)
        await upstream.relay_bytes(answer, client, hop.write_s)
        return client


async def delete(hop: Hop) -> web.StreamResponse:
    """Ending a session, relayed."""
    return await post(hop, None, None)
