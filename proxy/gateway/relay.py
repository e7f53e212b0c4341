"""Forwarding to the provider and relaying its answer. Knows HTTP, not budgets.

Headers cross in both directions through allow-lists; everything else (hop-by-hop headers, the
client's credentials, the provider's organisation and rate-limit headers) stays on its side.
Streams are relayed event by event as they arrive; when the client goes away the upstream is
still read to its end (up to a deadline), because its final event carries the usage to charge.

Time limits: a stream's headers come within `first_byte`, then `chunk_idle` bounds each silence
and `stream_total` the rest; a whole answer sends nothing until its generation is done, so its
headers and body together get `non_stream_answer`. A failure says whether the request may have
reached the provider (`UpstreamError.delivered`: a connection was established), which decides
whether the call is charged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote

import aiohttp
from aiohttp import web
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from multidict import CIMultiDict
from yarl import URL

from proxy.core.errors import BadRequest, NotFound, UpstreamError
from proxy.gateway.headers import allowed, with_credential
from proxy.gateway.sse import SSEDecoder, SSEEvent
from proxy.policy.upstreams import Timeouts

log = logging.getLogger(__name__)

REQUEST_HEADERS_UP = frozenset(
    {
        "accept",
        "anthropic-beta",
        "anthropic-version",
        "content-type",
        "user-agent",
        "openai-beta",
        "traceparent",
        "tracestate",
        "x-request-id",
    }
)
"""Client headers forwarded to the provider. Credentials (Authorization, x-api-key, api-key) are
replaced by the upstream's, never forwarded."""

RESPONSE_HEADERS_DOWN = frozenset(
    {
        "content-type",
        "cache-control",
        "openai-model",
        "openai-processing-ms",
        "openai-version",
        "retry-after",
        "x-request-id",
    }
)
"""Provider headers relayed to the client. Organisation, project and x-ratelimit-* describe the
shared provider account, so they stay here."""

_BAD_SEGMENT = re.compile(r"(?i)%2f|%5c|\\")
_REFUSED_CHARACTERS = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Unicode categories never part of an id: controls (NUL, CR, LF, DEL), format characters
(bidirectional overrides and isolates, zero-width ones), surrogates, line and paragraph
separators. They can only confuse a log, a terminal or the upstream's own parser."""
_PCHAR_SAFE = "!$&'()*+,=:@"
"""What RFC 3986 lets a path segment hold unquoted besides letters, digits and -._~, but `;`:
servers that read path parameters (`..;` on Tomcat and the proxies in front of it) would see a
dot segment or a parameter where the client sent an id."""


def check_path(raw_path: str) -> None:
    """Refuse, before any routing: dot segments and encoded slashes anywhere in a path (404),
    and characters no id holds once percent-decoded (400 `invalid_path`)."""
    path = raw_path.split("?", 1)[0]
    if _BAD_SEGMENT.search(path):
        raise NotFound(f"No such route: {path!r} (encoded slashes are not allowed in paths).")
    for segment in path.split("/"):
        if _decoded(segment, path) in (".", ".."):
            raise NotFound(f"No such route: {path!r} (dot segments are not allowed in paths).")


def _decoded(segment: str, path: str) -> str:
    """`segment` percent-decoded, refusing bytes that are not UTF-8 and _REFUSED_CHARACTERS."""
    try:
        text = unquote(segment, errors="strict") if "%" in segment else segment
    except UnicodeDecodeError:
        raise BadRequest(
            f"The path {path!r} is not UTF-8 once percent-decoded; quote each byte of an id's "
            "UTF-8 encoding.",
            code="invalid_path",
        ) from None
    if not text.isprintable():
        odd = next((c for c in text if unicodedata.category(c) in _REFUSED_CHARACTERS), None)
        if odd is not None:
            raise BadRequest(
                f"The path {path!r} holds U+{ord(odd):04X} "
                f"({unicodedata.name(odd, unicodedata.category(odd))}); control, format "
                "(bidirectional) and separator characters are not allowed in paths.",
                code="invalid_path",
            )
    return text


def path_segment(value: str) -> str:
    """A path parameter as one segment of an upstream URL: quoted, so a `?`, `#` or `%` in an
    id stays part of it instead of starting a query or an escape upstream."""
    return quote(value, safe=_PCHAR_SAFE)


def upstream_url(base_url: str, suffix: str) -> str:
    """`base_url` + `suffix` (which starts with '/'), after checking the suffix is clean."""
    check_path(suffix)
    return base_url + suffix


def headers_up(
    client: Mapping[str, str], api_key: str | None, auth: str = "bearer"
) -> CIMultiDict[str]:
    """The allow-listed client headers, and the provider key written the upstream's way
    (`auth`: bearer, x-api-key or api-key)."""
    return with_credential(allowed(client.items(), REQUEST_HEADERS_UP), api_key, auth)


def headers_down(upstream: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    return allowed(upstream, RESPONSE_HEADERS_DOWN)


class Connector(aiohttp.TCPConnector):
    """A TCPConnector that notes when a call has its connection, new or reused: from then on its
    request may reach the provider, so a failure no longer means the call was never sent."""

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        attempt = _ATTEMPT.get()
        if attempt is not None:
            attempt.connected = True
        return connection


@dataclass(slots=True)
class _Attempt:
    connected: bool
    """A connection to the provider was established: the request may have reached it."""


_ATTEMPT: ContextVar[_Attempt | None] = ContextVar("cycles_upstream_attempt", default=None)
"""The send in progress in this task, for Connector to mark connected."""

TimeoutName = Literal["first_byte", "non_stream_answer", "stream_total"]


@dataclass(frozen=True, slots=True)
class Deadline:
    """When the provider's answer must have arrived, and the timeout that says so: a stream's
    headers (`first_byte`), a whole answer's headers and body (`non_stream_answer`)."""

    at: float
    """Event loop time."""
    name: TimeoutName
    seconds: float

    @classmethod
    def after(cls, timeouts: Timeouts, name: TimeoutName) -> Deadline:
        seconds: float = getattr(timeouts, name)
        return cls(asyncio.get_running_loop().time() + seconds, name, seconds)

    def missed(self, what: str) -> str:
        return f"{what} within {self.seconds:g} s (timeouts.{self.name})"


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    timeouts: Timeouts,
    deadline: Deadline,
) -> aiohttp.ClientResponse:
    """Send the request and wait, until `deadline`, for the response headers. `url` goes as it
    is, already quoted (yarl would otherwise unquote `%3B` to `;`). Failures become
    UpstreamError, `delivered` unless the connection was never established (a session without
    Connector cannot tell, so its failures count as delivered)."""
    attempt = _Attempt(connected=not isinstance(session.connector, Connector))
    token = _ATTEMPT.set(attempt)
    try:
        async with asyncio.timeout_at(deadline.at):
            return await session.request(
                method,
                URL(url, encoded=True),
                data=body,
                headers=headers,
                timeout=_client_timeout(timeouts.connect),
                allow_redirects=False,
            )
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _send_failed(exc, attempt.connected, timeouts, deadline) from None
    finally:
        _ATTEMPT.reset(token)


def _send_failed(
    exc: Exception, connected: bool, timeouts: Timeouts, deadline: Deadline
) -> UpstreamError:
    """What a failed send tells the client: `delivered` once a connection was established (the
    provider may have the request), whether the connection timed out, the answer did, or the
    connection failed."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamError(
            f"the provider could not be reached within {timeouts.connect:g} s (timeouts.connect)",
            delivered=False,
        )
    if isinstance(exc, TimeoutError):
        if not connected:
            return UpstreamError(
                f"the provider could not be reached within {deadline.seconds:g} s "
                f"(timeouts.{deadline.name})",
                delivered=False,
            )
        return UpstreamError(
            deadline.missed("the provider did not answer"), delivered=True, timeout=deadline.name
        )
    if not connected:
        return UpstreamError(
            f"the provider could not be reached ({type(exc).__name__})", delivered=False
        )
    return UpstreamError(
        f"the connection was lost after the request was sent ({type(exc).__name__})",
        delivered=True,
    )


@functools.lru_cache(maxsize=64)
def _client_timeout(connect: float) -> aiohttp.ClientTimeout:
    """One ClientTimeout per connect timeout (the policy has a few), not one per call. No
    sock_read: aiohttp's would also bound the wait for the headers, which is the deadline's
    (first_byte or non_stream_answer); chunk_idle is pump's."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=None)


async def read_body(response: aiohttp.ClientResponse, deadline: Deadline, limit: int) -> bytes:
    """The whole body, by `deadline`, at most `limit` bytes (limits.max_answer_bytes). Failures
    and a larger body become UpstreamError (delivered: the headers came)."""
    try:
        async with asyncio.timeout_at(deadline.at):
            return await _read_at_most(response, limit)
    except TimeoutError:
        raise UpstreamError(
            deadline.missed("the provider did not finish its answer"),
            delivered=True,
            timeout=deadline.name,
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamError(
            f"the provider's answer was cut off ({type(exc).__name__})", delivered=True
        ) from None


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    data = bytearray()
    too_large = UpstreamError(
        f"the provider's answer is larger than {limit} bytes (limits.max_answer_bytes)",
        delivered=True,
    )
    if response.content_length is not None and response.content_length > limit:
        raise too_large
    async for chunk in response.content.iter_any():
        data += chunk
        if len(data) > limit:
            raise too_large
    return bytes(data)


@dataclass(slots=True)
class StreamResult:
    complete: bool = False
    """The upstream stream reached its end."""
    client_gone: bool = False
    """The client went away (or stopped reading) before the end."""
    forwarded_events: int = 0


async def pump(
    upstream: aiohttp.ClientResponse,
    client: web.StreamResponse | None,
    on_event: Callable[[SSEEvent], bytes | None],
    timeouts: Timeouts,
) -> StreamResult:
    """Relay an SSE stream event by event; `client` is None when it left before the start.
    `on_event` sees every event and says what the client gets of it: its bytes (the event's
    `raw`, or a rewrite), or None. The upstream may be silent
    `chunk_idle` between chunks and take `stream_total` in all. After the client goes away,
    keep reading (without relaying) until the upstream ends or `drain_after_disconnect`
    passes: the final event carries the usage to charge."""
    result = StreamResult()
    decoder = SSEDecoder()
    loop = asyncio.get_running_loop()
    end = loop.time() + timeouts.stream_total
    try:
        # One timer, moved per chunk: to the idle limit while reading, to the end while
        # writing (a slow client is client_write's business, not the upstream's silence).
        async with asyncio.timeout(None) as deadline:
            if client is None:
                end = _client_left(result, end, timeouts)
            while True:
                deadline.reschedule(min(end, loop.time() + timeouts.chunk_idle))
                chunk = await upstream.content.readany()
                if not chunk:
                    break
                out = [raw for event in decoder.feed(chunk) if (raw := on_event(event))]
                if out and client is not None and not result.client_gone:
                    deadline.reschedule(end)
                    if await _write(client, b"".join(out), timeouts):
                        result.forwarded_events += len(out)
                    else:
                        end = _client_left(result, end, timeouts)
            for event in decoder.flush():
                on_event(event)
            result.complete = True
    except TimeoutError:
        _log_cut(result, timeouts, silent=loop.time() < end)
    except (aiohttp.ClientError, OSError) as exc:
        log.warning("upstream stream ended early: %s", type(exc).__name__)
    return result


def _log_cut(result: StreamResult, timeouts: Timeouts, *, silent: bool) -> None:
    """Which timeout cut the upstream stream: its silence, the drain after the client left, or
    its total length."""
    if silent:
        log.warning(
            "upstream stream cut: silent for %g s (timeouts.chunk_idle)", timeouts.chunk_idle
        )
    elif result.client_gone:
        log.warning("upstream stream cut: no end within timeouts.drain_after_disconnect")
    else:
        log.warning(
            "upstream stream cut: longer than %g s (timeouts.stream_total)",
            timeouts.stream_total,
        )


def _client_left(result: StreamResult, end: float, timeouts: Timeouts) -> float:
    """The client went away: read on, without relaying, for `drain_after_disconnect` (never
    past `end`); returns the new end."""
    result.client_gone = True
    drain_until = asyncio.get_running_loop().time() + timeouts.drain_after_disconnect
    return min(end, drain_until)


async def _write(client: web.StreamResponse, data: bytes, timeouts: Timeouts) -> bool:
    """Write to the client; False when it is gone or too slow to take the data."""
    try:
        async with asyncio.timeout(timeouts.client_write):
            await client.write(data)
        return True
    except (TimeoutError, ConnectionError, aiohttp.ClientConnectionResetError):
        return False
