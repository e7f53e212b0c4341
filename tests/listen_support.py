"""Raw clients for the listener tests: a keep-alive client that pings, one that sends a call
and leaves, and a bare connection."""

from __future__ import annotations

import asyncio
import time

import orjson

from proxy.fake_upstream import FakeUpstream


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """One HTTP answer with a Content-Length body: its head and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(row.split(b":", 1)[1])
        for row in head.split(b"\r\n")
        if row.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


class Pinger:
    """A keep-alive client that asks /healthz every `every` seconds on one connection, idle in
    between, until stopped or closed by the proxy."""

    def __init__(self, url: str, every: float) -> None:
        self.url, self.every = url, every
        self.answers = 0
        self.closed_after: float | None = None
        self.stop = asyncio.Event()

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection(*address(self.url))
        opened = time.monotonic()
        try:
            while not self.stop.is_set():
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n")
                await read_answer(reader)
                self.answers += 1
                if await _closed_within(reader, self.every):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if not self.stop.is_set():
                self.closed_after = time.monotonic() - opened
            writer.close()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Wait `seconds` (the scenario's pace) for the proxy to close the connection."""
    try:
        data = await asyncio.wait_for(reader.read(1), seconds)
    except TimeoutError:
        return False
    return data == b""


async def call_and_leave(url: str, body: dict[str, object], fake: FakeUpstream) -> bytes:
    """POST a chat call on a new connection and close it as soon as the call reached the
    provider, or the proxy answered; returns what it answered (b"" when the call went up)."""
    reader, writer = await asyncio.open_connection(*address(url))
    data = orjson.dumps(body)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nX-Cycles-Tenant: alpha\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(data)).encode()
        + b"\r\n\r\n"
        + data
    )
    before = fake.calls
    answer = asyncio.ensure_future(reader.read(64))
    deadline = time.monotonic() + 10
    try:
        while fake.calls == before and not answer.done():
            assert time.monotonic() < deadline, "the call neither went up nor was answered"
            await asyncio.wait([answer], timeout=0.01)
        return answer.result() if answer.done() else b""
    finally:
        answer.cancel()
        writer.close()
