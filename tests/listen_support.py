"""Raw clients for the listener tests: a keep-alive client that pings, one that sends a call
and leaves, one that trickles a body, one that sends a request whole at once, and a bare
connection."""

from __future__ import annotations

import asyncio
import socket
import time
from contextlib import suppress
from dataclasses import dataclass

import orjson

from proxy.testing.fake_upstream import FakeUpstream


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


@dataclass
class Trickled:
    """What a client trickling a request body saw: the answer (b"" if none), when it came and
    when the server closed the connection, in seconds after the headers went (None: not within
    the client's patience)."""

    answer: bytes = b""
    answered_after: float | None = None
    closed_after: float | None = None


async def trickle_body(
    url: str, head: bytes, body: bytes, every: float = 1.0, *, until_closed: bool = True
) -> Trickled:
    """Send `head` (a request line and headers, without the blank line ending them) announcing
    `body`, then `body` one byte every `every` seconds until the server answers (or all of it
    is sent); then (`until_closed`) wait, at most 15 s, for the server to close the
    connection."""
    reader, writer = await asyncio.open_connection(*address(url))
    writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode())
    started, seen = time.monotonic(), Trickled()
    answer = asyncio.ensure_future(read_answer(reader))
    try:
        for i in range(len(body)):
            done, _ = await asyncio.wait([answer], timeout=every)
            if done:
                break
            writer.write(body[i : i + 1])
        seen.answer = await asyncio.wait_for(answer, 15)
        seen.answered_after = time.monotonic() - started
        if until_closed and await asyncio.wait_for(reader.read(), 15) == b"":
            seen.closed_after = time.monotonic() - started
    except (ConnectionError, asyncio.IncompleteReadError):
        seen.closed_after = time.monotonic() - started
    except TimeoutError:
        pass
    finally:
        answer.cancel()
        writer.close()
    return seen


@dataclass
class AtOnce:
    """What a client that sent its whole request at once saw: how many bytes the server took
    (all of them, unless it closed the connection first), what it read (until the server closed
    the connection, or its patience ran out), and whether the server closed the connection."""

    sent: int
    answer: bytes
    closed: bool


async def send_at_once(url: str, request: bytes, patience: float = 5.0) -> AtOnce:
    """Send `request` (head and body) on a new connection in one go, as fast as the server takes
    it, then read until the server closes the connection or `patience` seconds pass. A blocking
    socket in a thread: what the server answered before closing (with a reset, when it closes
    with the body unread) is still read, whatever the event loop's order."""
    return await asyncio.to_thread(_send_at_once, address(url), request, patience)


def _send_at_once(where: tuple[str, int], request: bytes, patience: float) -> AtOnce:
    with socket.create_connection(where, timeout=patience) as sock:
        sent, data = 0, memoryview(request)
        with suppress(ConnectionError, TimeoutError):
            while sent < len(data):
                sent += sock.send(data[sent:])
        answer = bytearray()
        try:
            while chunk := sock.recv(1 << 16):
                answer += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            return AtOnce(sent, bytes(answer), closed=False)
        return AtOnce(sent, bytes(answer), closed=True)
