"""The MCP server's side: what goes up (allow-listed headers and the server's credential), and
its answer relayed down, a whole JSON body or an SSE stream event by event as it comes.

On a POST's SSE stream the proxy reads each event's `data:` as JSON to spot the message that
answers the request (outcome.answers); progress notifications, the server's own requests and
`: ping` comments pass through untouched. A client that goes away does not stop the reading:
the answer decides the charge, so the stream is read on, without relaying, until it comes or
the deadline passes. A POST's stream is bounded by `limits.max_answer_bytes` as a JSON answer
is. GET event streams are relayed as bytes (nothing held: no bound but the session's life).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from proxy.gateway.headers import allowed, with_credential
from proxy.gateway.sse import SSEDecoder, SSEEvent
from proxy.mcp.outcome import answers

log = logging.getLogger(__name__)

REQUEST_HEADERS_UP = frozenset(
    {
        "accept",
        "content-type",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
        "mcp-method",
        "mcp-name",
    }
)
"""Client headers an MCP server gets. Never the client's credentials, cookies or X-Cycles-*:
the server's own credential is the proxy's to add."""

RESPONSE_HEADERS_DOWN = frozenset(
    {"content-type", "mcp-session-id", "mcp-protocol-version", "cache-control", "retry-after"}
)

Rewrite = Callable[[dict[str, Any]], dict[str, Any] | None]
"""Sees every JSON message of an answer; returns a replacement, or None to keep it."""


class Unreachable(Exception):
    """The server could not be reached: the request never left (nothing ran)."""


class Broken(Exception):
    """The exchange failed after the request may have reached the server."""


class TooLarge(Broken):
    """A whole JSON answer passed the size bound: the server answered (it is done with the
    request), the proxy just will not hold it."""


def headers_up(client: Mapping[str, str], token: str | None, auth: str) -> CIMultiDict[str]:
    """The allow-listed client headers, and the server's credential written its way (`auth`:
    bearer, x-api-key or api-key)."""
    return with_credential(allowed(client.items(), REQUEST_HEADERS_UP), token, auth)


def headers_down(upstream: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    return allowed(upstream, RESPONSE_HEADERS_DOWN)


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    connect_s: float,
) -> aiohttp.ClientResponse:
    """Send and wait for the response headers (the caller's deadline bounds the wait)."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_s, sock_read=None)
    try:
        return await session.request(
            method, URL(url), data=body, headers=headers, timeout=timeout, allow_redirects=False
        )
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        raise Unreachable(f"the MCP server could not be reached ({type(exc).__name__})") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise Broken(f"the connection to the MCP server failed ({type(exc).__name__})") from None


def is_stream(response: aiohttp.ClientResponse) -> bool:
    return response.content_type == "text/event-stream"


async def read_json(
    response: aiohttp.ClientResponse, limit: int
) -> tuple[bytes, dict[str, Any] | None]:
    """A whole answer, at most `limit` bytes (TooLarge beyond), and its JSON object if it is
    one."""
    data = bytearray()
    try:
        async for chunk in response.content.iter_any():
            data += chunk
            if len(data) > limit:
                raise TooLarge(f"the MCP server's answer is larger than {limit} bytes")
    except (aiohttp.ClientError, OSError) as exc:
        raise Broken(f"the MCP server's answer was cut off ({type(exc).__name__})") from None
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return bytes(data), None
    return bytes(data), parsed if isinstance(parsed, dict) else None


@dataclass(slots=True)
class Relayed:
    """What an SSE relay saw: the answer (None: none came), whether the client left."""

    answer: dict[str, Any] | None = None
    client_gone: bool = False


async def relay_events(
    upstream: aiohttp.ClientResponse,
    client: web.StreamResponse,
    request_id: Any,
    bounds: tuple[float, int],
    rewrite: Rewrite | None = None,
) -> Relayed:
    """Relay a POST's SSE stream until the answer to `request_id` (or the stream's end), each
    write within `bounds`' seconds. Broken when the stream fails or passes `bounds`' bytes (an
    event under way is held until it ends: the stream is bounded, not only whole answers); the
    caller's deadline bounds it all."""
    seen, decoder = Relayed(), SSEDecoder()
    (write_s, limit), read = bounds, 0
    try:
        while seen.answer is None:
            chunk = await upstream.content.readany()
            if not chunk:
                break
            read += len(chunk)
            if read > limit:
                raise Broken(f"the MCP server's stream is larger than {limit} bytes")
            out = [_event(event, request_id, seen, rewrite) for event in decoder.feed(chunk)]
            if out and not seen.client_gone:
                seen.client_gone = not await write(client, b"".join(out), write_s)
        for event in decoder.flush():
            _event(event, request_id, seen, rewrite)
    except (aiohttp.ClientError, OSError) as exc:
        raise Broken(f"the MCP server's stream was cut off ({type(exc).__name__})") from None
    return seen


def _event(event: SSEEvent, request_id: Any, seen: Relayed, rewrite: Rewrite | None) -> bytes:
    """The bytes the client gets of `event`, noting the answer when this is it."""
    if event.data is None or seen.answer is not None:
        return event.raw
    try:
        message = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return event.raw
    if answers(message, request_id):
        seen.answer = message
    replaced = rewrite(message) if rewrite is not None and isinstance(message, dict) else None
    if replaced is None:
        return event.raw
    if seen.answer is message:
        seen.answer = replaced
    return sse_event(orjson.dumps(replaced), event.id)


def sse_event(data: bytes, event_id: str | None = None) -> bytes:
    """One `message` event holding `data` (one line of JSON)."""
    head = b"" if event_id is None else b"id: " + event_id.encode() + b"\r\n"
    return head + b"event: message\r\ndata: " + data + b"\r\n\r\n"


async def write(client: web.StreamResponse, data: bytes, write_s: float) -> bool:
    """Write to the client; False when it is gone or too slow to take the data."""
    try:
        async with asyncio.timeout(write_s):
            await client.write(data)
        return True
    except (TimeoutError, ConnectionError, aiohttp.ClientConnectionResetError):
        return False


async def relay_bytes(
    upstream: aiohttp.ClientResponse, client: web.StreamResponse, write_s: float
) -> None:
    """A GET event stream, byte for byte, until either side ends it."""
    try:
        async for chunk in upstream.content.iter_any():
            if not await write(client, chunk, write_s):
                return
    except (aiohttp.ClientError, OSError) as exc:
        log.info("MCP event stream ended: %s", type(exc).__name__)
