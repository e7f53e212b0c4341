"""Forwarding to the provider and relaying its answer. Knows HTTP, not budgets.

Headers cross in both directions through allow-lists; everything else (hop-by-hop headers, the
client's credentials, the provider's organisation and rate-limit headers) stays on its side.
Streams are relayed event by event as they arrive; when the client goes away the upstream is
still read to its end (up to a deadline), because its final event carries the usage to charge.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from proxy.errors import NotFound, UpstreamError
from proxy.policy.runtime import Timeouts
from proxy.sse import SSEDecoder, SSEEvent

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


def check_path(raw_path: str) -> None:
    """Refuse dot segments and encoded slashes anywhere in a path, before any routing."""
    path = raw_path.split("?", 1)[0]
    if _BAD_SEGMENT.search(path):
        raise NotFound(f"No such route: {path!r} (encoded slashes are not allowed in paths).")
    for segment in path.split("/"):
        if unquote(segment) in (".", ".."):
            raise NotFound(f"No such route: {path!r} (dot segments are not allowed in paths).")


def upstream_url(base_url: str, suffix: str) -> str:
    """`base_url` + `suffix` (which starts with '/'), after checking the suffix is clean."""
    check_path(suffix)
    return base_url + suffix


def headers_up(
    client: Mapping[str, str], api_key: str | None, auth: str = "bearer"
) -> CIMultiDict[str]:
    """The allow-listed client headers, and the provider key written the upstream's way
    (`auth`: bearer, x-api-key or api-key)."""
    out: CIMultiDict[str] = CIMultiDict(
        (name, value) for name, value in client.items() if name.lower() in REQUEST_HEADERS_UP
    )
    if api_key:
        if auth == "bearer":
            out["Authorization"] = f"Bearer {api_key}"
        else:
            out[auth] = api_key
    return out


def headers_down(upstream: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    return CIMultiDict(
        (name, value) for name, value in upstream if name.lower() in RESPONSE_HEADERS_DOWN
    )


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    timeouts: Timeouts,
) -> aiohttp.ClientResponse:
    """Send the request and wait for the response headers. Failures become UpstreamError."""
    timeout = _client_timeout(timeouts.connect, timeouts.chunk_idle)
    try:
        async with asyncio.timeout(timeouts.first_byte):
            return await session.request(
                method, url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            )
    except TimeoutError:
        raise UpstreamError(
            f"the provider did not answer within {timeouts.first_byte:g} s"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamError(f"the provider could not be reached ({type(exc).__name__})") from None


@functools.lru_cache(maxsize=64)
def _client_timeout(connect: float, chunk_idle: float) -> aiohttp.ClientTimeout:
    """One ClientTimeout per distinct pair (the policy has a few), not one per call."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=chunk_idle)


async def read_body(response: aiohttp.ClientResponse, timeouts: Timeouts) -> bytes:
    try:
        async with asyncio.timeout(timeouts.stream_total):
            return await response.read()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise UpstreamError(f"the provider's answer was cut off ({type(exc).__name__})") from None


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
    on_event: Callable[[SSEEvent], bool],
    timeouts: Timeouts,
) -> StreamResult:
    """Relay an SSE stream event by event; `client` is None when it left before the start.
    `on_event` sees every event and says whether the client gets it. After the client goes
    away, keep reading (without relaying) until the upstream ends or `drain_after_disconnect`
    passes: the final event carries the usage to charge."""
    result = StreamResult()
    decoder = SSEDecoder()
    try:
        async with asyncio.timeout(timeouts.stream_total) as deadline:
            if client is None:
                _client_left(result, deadline, timeouts)
            async for chunk in upstream.content.iter_any():
                out = [event.raw for event in decoder.feed(chunk) if on_event(event)]
                if out and client is not None and not result.client_gone:
                    if await _write(client, b"".join(out), timeouts):
                        result.forwarded_events += len(out)
                    else:
                        _client_left(result, deadline, timeouts)
            for event in decoder.flush():
                on_event(event)
            result.complete = True
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        log.warning("upstream stream ended early: %s", type(exc).__name__)
    return result


def _client_left(result: StreamResult, deadline: asyncio.Timeout, timeouts: Timeouts) -> None:
    result.client_gone = True
    drain_until = asyncio.get_running_loop().time() + timeouts.drain_after_disconnect
    current = deadline.when()
    deadline.reschedule(drain_until if current is None else min(current, drain_until))


async def _write(client: web.StreamResponse, data: bytes, timeouts: Timeouts) -> bool:
    """Write to the client; False when it is gone or too slow to take the data."""
    try:
        async with asyncio.timeout(timeouts.client_write):
            await client.write(data)
        return True
    except (TimeoutError, ConnectionError, aiohttp.ClientConnectionResetError):
        return False
