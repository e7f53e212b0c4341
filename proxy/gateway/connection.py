"""One connection on a bounded listener (listen.py): aiohttp's handler for it, counted, and
the protocols that refuse a connection.

`Counted` holds its listener's place until the connection closes and no request of its is
still being handled; it is idle (a place another connection may take) when no request is
running and nothing has arrived since its last answer; an idle connection is closed after
the keep-alive timeout. Its client address is counted until it closes, and an address over
its bound is refused as the listener refuses a connection past the bound.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

import orjson

if TYPE_CHECKING:
    from proxy.gateway.listen import Gate

ANSWERING_S = 0.05
"""After its handler returns, a connection is not idle for this long, nor while its answer is
still being written: aiohttp writes the answer after the handler returns."""
REFUSAL_LINGER_S = 2.0
"""How long a refused connection is read (and what it sends dropped) before it is closed."""


def refusal(status: int, message: str, kind: str, code: str) -> bytes:
    """A whole HTTP answer that closes its connection, in the API's error shape."""
    body = orjson.dumps({"error": {"message": message, "type": kind, "code": code, "param": None}})
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
        f"Retry-After: 1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Counted(asyncio.Protocol):
    """aiohttp's handler for one connection, holding a place of its listener (module
    docstring)."""

    def __init__(self, handler: asyncio.Protocol, gate: Gate) -> None:
        self.handler, self._gate = handler, gate
        self._transport: asyncio.Transport | None = None
        self._refused: Refused | None = None
        self._peer: str | None = None
        self._busy = 0
        self._closed = self._released = False
        loop = asyncio.get_running_loop()
        self._received = self._answered = loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = _host(transport.get_extra_info("peername"))
        key = None if peer is None else self._gate.limits.peer_key(peer)
        if key is not None and self._gate.peers[key] >= self._gate.limits.per_peer:
            self._refuse(transport)
            return
        self._peer = key
        if key is not None:
            self._gate.peers[key] += 1
        self.handler.connection_made(transport)
        self._arm_idle_timer()

    def _refuse(self, transport: asyncio.BaseTransport) -> None:
        """Past the per-address bound: answered as a refused connection, its place given back."""
        self._gate.connections.pop(self.handler, None)
        self._release()
        self._refused = Refused(self._gate, self._gate.peer_refusal)
        self._refused.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._refused is not None:
            return
        self._received = asyncio.get_running_loop().time()
        self._gate.touch(self)
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused is not None:
            return None
        return self.handler.eof_received()

    def pause_writing(self) -> None:
        if self._refused is None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self._refused is None:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused is not None:
            self._refused.connection_lost(exc)
            return
        self._closed = True
        self._gate.connections.pop(self.handler, None)
        if self._peer is not None:
            self._gate.peers[self._peer] -= 1
            if not self._gate.peers[self._peer]:
                del self._gate.peers[self._peer]
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if not self._busy:
            self._release()
        self.handler.connection_lost(exc)

    def started(self) -> None:
        """A request of this connection is being handled."""
        self._busy += 1

    def ended(self) -> None:
        """A request's handler returned (its answer is about to be written)."""
        self._busy -= 1
        self._answered = asyncio.get_running_loop().time()
        if self._closed and not self._busy:
            self._release()
        elif not self._closed:
            self._gate.touch(self)
            self._arm_idle_timer()

    def idle(self) -> bool:
        """No request running, nothing received since the last answer, which is written."""
        if self._closed or self._busy or self._received > self._answered:
            return False
        if self._transport is None or self._transport.get_write_buffer_size():
            return False
        return asyncio.get_running_loop().time() - self._answered >= ANSWERING_S

    def evict(self) -> None:
        """Give this idle connection's place to a new one, and close it."""
        self._gate.connections.pop(self.handler, None)
        self._release()
        if self._transport is not None:
            self._transport.close()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._gate.release()

    def _arm_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(self._gate.limits.keep_alive, self._close_if_idle)

    def _close_if_idle(self) -> None:
        self._idle_timer = None
        now = asyncio.get_running_loop().time()
        quiet = now - self._answered >= self._gate.limits.keep_alive - 0.01
        if quiet and self.idle() and self._transport is not None:
            self._transport.close()


class Refused(asyncio.Protocol):
    """Answers `answer` at once, then reads (and drops) what the client sends until it closes
    or REFUSAL_LINGER_S pass: closing with unread data would reset the connection, and the
    client could lose the answer."""

    def __init__(self, gate: Gate, answer: bytes) -> None:
        self._gate, self._answer = gate, answer
        self._closing: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._gate.refusing += 1
        transport.write(self._answer)
        if transport.can_write_eof():
            transport.write_eof()
        loop = asyncio.get_running_loop()
        self._closing = loop.call_later(REFUSAL_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        """Dropped: the answer is already written."""

    def connection_lost(self, exc: Exception | None) -> None:
        self._gate.refusing -= 1
        if self._closing is not None:
            self._closing.cancel()


class Reset(asyncio.Protocol):
    """Beyond the refusals too: reset at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()


def _host(peername: object) -> str | None:
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    return None
