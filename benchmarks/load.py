"""The load generator: closed-loop aiohttp clients sending a small chat request.

`concurrency` workers share one ClientSession (one keep-alive connection each) and send
requests back to back until a count or a deadline is reached. Every answer is read to its end
and must be a 200; a stream must end with `data: [DONE]`. Latency is measured from just before
the request is sent to the last byte; a stream's time to first byte is to its first body chunk
(the first SSE event).

Requests rotate over 8 tenants, each with a workflow and one of 16 run ids, so the ledger's
state stays bounded however long the run: what grows in the proxy's memory is the proxy's.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
import orjson

Mode = Literal["json", "stream", "mixed"]

TENANTS = [f"bench-{i}" for i in range(8)]
RUNS_PER_TENANT = 16
MESSAGES = [
    {
        "role": "system",
        "content": "You are a support assistant for an online store. Answer briefly and politely.",
    },
    {
        "role": "user",
        "content": "My order 4711 arrived damaged. Can I get a replacement, and how long "
        "will it take to ship?",
    },
]


def chat_body(stream: bool) -> bytes:
    """A realistic small chat completion request body."""
    body: dict[str, object] = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "max_tokens": 128,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def scope_headers() -> list[dict[str, str]]:
    """Every (tenant, workflow, run) the load uses, as request headers."""
    return [
        {
            "Content-Type": "application/json",
            "Authorization": "Bearer sk-bench-client",
            "X-Cycles-Tenant": tenant,
            "X-Cycles-Workflow": "support",
            "X-Cycles-Run": f"run-{run}",
        }
        for run in range(RUNS_PER_TENANT)
        for tenant in TENANTS
    ]


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ttfb_ms: list[float] = field(default_factory=list)
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class _Plan:
    """Hands out request numbers until the count or the deadline is reached."""

    def __init__(self, count: int | None, seconds: float | None) -> None:
        self._numbers: Iterator[int] = itertools.count()
        self._count = count
        self._deadline = None if seconds is None else time.perf_counter() + seconds

    def next(self) -> int | None:
        number = next(self._numbers)
        if self._count is not None and number >= self._count:
            return None
        if self._deadline is not None and time.perf_counter() >= self._deadline:
            return None
        return number


async def run_load(
    url: str,
    mode: Mode,
    concurrency: int,
    *,
    count: int | None = None,
    seconds: float | None = None,
    record: bool = False,
) -> LoadResult:
    """Send `count` requests, or as many as fit in `seconds`, with `concurrency` workers, to
    `url + /v1/chat/completions`. `record` keeps every latency (and stream TTFB)."""
    bodies = {False: chat_body(False), True: chat_body(True)}
    headers = scope_headers()
    target = url.rstrip("/") + "/v1/chat/completions"
    result = LoadResult()
    plan = _Plan(count, seconds)
    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while (number := plan.next()) is not None:
                stream = mode == "stream" or (mode == "mixed" and number % 2 == 1)
                hdrs = headers[number % len(headers)]
                try:
                    latency, ttfb = await _one(session, target, bodies[stream], hdrs, stream)
                except (aiohttp.ClientError, OSError, ValueError) as exc:
                    result.errors += 1
                    result.first_error = result.first_error or repr(exc)
                    continue
                result.requests += 1
                if record:
                    result.latencies_ms.append(latency)
                    if stream:
                        result.ttfb_ms.append(ttfb)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


async def _one(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    stream: bool,
) -> tuple[float, float]:
    """One call: (latency ms, time to first body byte ms)."""
    started = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as response:
        first = await response.content.readany()
        ttfb = time.perf_counter() - started
        rest = await response.read() if not stream else await _drain(response)
        if response.status != 200:
            raise ValueError(f"status {response.status}: {(first + rest)[:200]!r}")
        if stream and not (first + rest).endswith(b"data: [DONE]\n\n"):
            raise ValueError("the stream did not end with data: [DONE]")
    return (time.perf_counter() - started) * 1000, ttfb * 1000


async def _drain(response: aiohttp.ClientResponse) -> bytes:
    """The rest of a stream; only its tail is kept (to check the [DONE])."""
    tail = b""
    async for chunk in response.content.iter_any():
        tail = (tail + chunk)[-64:]
    return tail
