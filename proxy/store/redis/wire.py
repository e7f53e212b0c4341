"""A lean, pipelined Redis connection for the hot path: the reserve and settle scripts.

redis-py's asyncio client spends well over 100 µs of CPU on each 30-argument EVALSHA: it encodes
every argument through several layers, checks a connection out of a pool under a lock, and
arms a timeout per command. Here one connection carries every call of the process. A command is
packed into bytes once, its future queued, and the bytes written; commands issued in the same
loop iteration leave in one write, so a burst of reserves is one pipeline. Redis answers a
connection's commands in the order it received them, so replies resolve the queued futures in
order; hiredis parses them.

A connection that is lost, or silent past `timeout` while commands wait, fails every command in
flight with ConnectionError (the ledger maps it to LedgerUnavailable and applies fail_mode); the
next command connects again. A caller that gives up (cancellation) leaves its future in the
queue, so the replies that follow still meet the right futures.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

CONNECT_TIMEOUT_S = 2.0


class ReplyError(Exception):
    """Redis answered with an error (`-ERR …`, `-NOSCRIPT …`)."""


class NotSent(ConnectionError):
    """The command was never written: no connection to Redis could be made (so it cannot run)."""


class ConnectTimeout(TimeoutError):
    """The command was never written: connecting to Redis took longer than CONNECT_TIMEOUT_S."""


def pack(args: tuple[str, ...]) -> bytes:
    """The RESP array of bulk strings for one command (UTF-8), packed by hiredis in C: a
    reserve's 40-odd arguments cost a few µs, a quarter of a Python loop's."""
    # hiredis's stub types its argument as a 1-tuple; any tuple of str is packed.
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


Head = tuple[int, bytes]
"""A command's first arguments, packed once (`head`): their count and their RESP bytes."""


def head(args: tuple[str, ...]) -> Head:
    """The first arguments of commands that share them (a script's SHA and keys), packed once."""
    packed = pack(args)
    return len(args), packed[packed.index(b"\r\n") + 2 :]


def pack_after(first: Head, args: tuple[str, ...]) -> bytes:
    """The command `first` + `args`, the same bytes as `pack` of all of them."""
    count, packed = first
    rest = pack(args)
    return b"*%d\r\n%b%b" % (count + len(args), packed, rest[rest.index(b"\r\n") + 2 :])


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._reader = hiredis.Reader(encoding="utf-8", errors="strict")
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._watch: asyncio.TimerHandle | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        if self.lost or self._transport is None:
            raise NotSent("the Redis connection is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending.append((future, self._loop.time()))
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(packed)
        if self._watch is None:
            self._watch = self._loop.call_later(self._timeout, self._check)
        return future

    def _flush(self) -> None:
        if self._out and self._transport is not None and not self.lost:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            future, _ = self._pending.popleft()
            if future.done():
                continue  # its caller gave up; the reply is dropped in order
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ReplyError(str(reply)))
            else:
                future.set_result(reply)

    def _check(self) -> None:
        """Every `timeout` while commands wait: abort if the oldest has waited that long."""
        self._watch = None
        if not self._pending:
            return
        oldest = self._pending[0][1]
        if self._loop.time() - oldest >= self._timeout:
            self._fail(TimeoutError(f"Redis did not answer within {self._timeout:g} s"))
            return
        self._watch = self._loop.call_at(oldest + self._timeout, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"the Redis connection was lost ({exc or 'closed'})"))

    def _fail(self, exc: Exception) -> None:
        self.lost = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        while self._pending:
            future, _ = self._pending.popleft()
            if not future.done():
                future.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self._fail(ConnectionError("the Redis connection was closed"))


class Wire:
    """One pipelined connection to the Redis at `url` (redis:// or rediss://, with optional
    user, password and database), opened on first use and again after a loss."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"Wire speaks to one Redis (redis:// or rediss://), not {url!r}")
        self._host = parts.hostname or "localhost"
        self._port = parts.port or 6379
        self._ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        self._auth = _auth(parts.username, parts.password)
        self._db = (parts.path or "/0").strip("/") or "0"
        self._timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._closed = False

    async def call(self, *args: str) -> Any:
        """Send one command and return its reply; ReplyError for an error reply,
        ConnectionError or TimeoutError when Redis cannot be reached or does not answer (NotSent
        or ConnectTimeout when the command was never written)."""
        return await self.send(pack(args))

    async def send(self, packed: bytes) -> Any:
        """`call` with the command already packed (`pack`, `pack_after`)."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            if self._closed:
                raise NotSent("the Redis connection was closed")
            try:
                protocol = await self._connect()
            except TimeoutError as exc:
                raise ConnectTimeout(f"cannot connect to Redis: {exc}") from exc
            except OSError as exc:  # refused, unreachable, closed
                raise NotSent(f"cannot connect to Redis: {exc}") from exc
        return await protocol.send(packed)

    async def _connect(self) -> _Protocol:
        # Callers arriving while a connection is being made wait for that one.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        except asyncio.CancelledError:
            if connecting.cancelled() and self._closed:  # close() gave up on it, not our caller
                raise ConnectionError("the Redis connection was closed") from None
            raise
        finally:
            # Only the attempt this caller waited for: when it failed, the callers that waited
            # for it retry as they wake, and the first of them has started the next attempt,
            # which the others must share. Forgetting that one would open a connection per
            # caller, all but the last never closed.
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        timeout = self._timeout
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: _Protocol(timeout), self._host, self._port, ssl=self._ssl
            ),
            CONNECT_TIMEOUT_S,
        )
        try:
            if self._auth:
                await protocol.send(pack(("AUTH", *self._auth)))
            if self._db != "0":
                await protocol.send(pack(("SELECT", self._db)))
        except BaseException:
            protocol.close()
            raise
        if self._closed:  # closed while this connection was being made: it must not outlive
            protocol.close()
            raise ConnectionError("the Redis connection was closed")
        self._protocol = protocol
        return protocol

    async def close(self) -> None:
        """Close the connection; one being made is abandoned (and closed once made)."""
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None


def _auth(username: str | None, password: str | None) -> tuple[str, ...]:
    if password is None:
        return ()
    if username:
        return (unquote(username), unquote(password))
    return (unquote(password),)
