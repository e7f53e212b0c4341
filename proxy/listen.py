"""The listeners' own limits: how long a connection may take to send its request headers, and
how many connections a listener holds open at once.

Headers: aiohttp closes a connection that waits for a request longer than its keep-alive
timeout, counted from when the connection opened or its previous answer went out, and that
wait includes a request whose headers are still arriving. `runner` sets that timeout to the
header limit (`timeouts.read_request`), so a client trickling its headers is cut when it runs
out, and an idle keep-alive connection is closed after the same time. The body has its own
limit (handlers.read_limited).

Connections: `BoundedSite` counts the connections its listener holds. Beyond `max_connections`
a new one is answered at once, 503 `too_many_connections` with `Retry-After: 1` (the openai SDK
retries it), and closed; it is held a moment to read what the client sent, so the answer is not
lost to a reset. At most as many again are being refused at any time; beyond that a connection
is reset outright. Each process (each `--workers` worker) counts its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

import orjson
from aiohttp import web

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 1024
"""`--max-connections`' default, per listener and process."""
REFUSAL_LINGER_S = 2.0
"""How long a refused connection is read (and what it sends dropped) before it is closed."""
WARN_EVERY_S = 60.0


def runner(app: web.Application, header_timeout: float) -> web.AppRunner:
    """An AppRunner whose connections must send a request's headers within `header_timeout`
    seconds of opening or of their previous answer (aiohttp's keep-alive timeout)."""
    return web.AppRunner(app, access_log=None, keepalive_timeout=header_timeout)


class BoundedSite(web.BaseSite):
    """A TCP listener holding at most `max_connections` open connections."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        max_connections: int = MAX_CONNECTIONS,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner)
        self._host, self._port, self._reuse_port = host, port, reuse_port
        self._max = max_connections

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "the runner is set up before its sites start"
        self._server = await asyncio.get_running_loop().create_server(
            Gate(server, self._max),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port,
        )


class Gate:
    """The listener's protocol factory: aiohttp's request handler while fewer than `limit`
    connections are open, else a refusal."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self._server, self.limit = server, limit
        self.open = 0
        self.refusing = 0
        self._warned = 0.0
        body = orjson.dumps(
            {
                "error": {
                    "message": f"The proxy holds {limit} connections, its limit "
                    "(--max-connections); retry shortly.",
                    "type": "service_unavailable",
                    "code": "too_many_connections",
                    "param": None,
                }
            }
        )
        self.refusal = (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )

    def __call__(self) -> asyncio.Protocol:
        if self.open < self.limit:
            self.open += 1
            return _Counted(self._server(), self)
        self._warn()
        if self.refusing < self.limit:
            return _Refused(self)
        return _Reset()

    def _warn(self) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning(
                "refusing connections: %d open, the limit (--max-connections %d)",
                self.open,
                self.limit,
            )


class _Counted(asyncio.Protocol):
    """aiohttp's handler for one connection, which gives its place back when it closes."""

    def __init__(self, handler: asyncio.Protocol, gate: Gate) -> None:
        self._handler, self._gate = handler, gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received()

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gate.open -= 1
        self._handler.connection_lost(exc)


class _Refused(asyncio.Protocol):
    """Answers 503 at once, then reads (and drops) what the client sends until it closes or
    REFUSAL_LINGER_S pass: closing with unread data would reset the connection, and the
    client could lose the answer."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._closing: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._gate.refusing += 1
        transport.write(self._gate.refusal)
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


class _Reset(asyncio.Protocol):
    """Beyond the refusals too: reset at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()
