"""The listeners' own limits: how long a connection may take to send its request headers, how
long it may sit idle between requests, and how many places a listener holds at once.

Headers: aiohttp closes a connection that waits for a request longer than its keep-alive
timeout, counted from when the connection opened or its previous answer went out, and that
wait includes a request whose headers are still arriving. `runner` sets that timeout to the
header limit (`timeouts.read_request`), so a client trickling its headers is cut when it runs
out. The body has its own limit, on every listener (gateway.body.read_limited: within
`read_request` more, else 408). After an answer to a request whose body was not read to its end
(a 401, 408 or 413), what the client still sends is read and dropped for at most the runner's
`lingering` seconds, then the connection is closed (closing at once, with data unread, would
reset it, and the client could lose the answer): aiohttp's 10 s on the proxy port, whose bodies
are large, ADMIN_LINGER_S on the admin listener, whose bodies are small (its refusals of a
caller it has not admitted close at once instead: admin.auth.closed_after). An idle keep-alive
connection (its last answer sent, nothing more received) is closed sooner, after
`--keep-alive-timeout`.

Places: `BoundedSite` holds at most `max_connections` places. A connection takes one when it
opens; it gives it back when it closes, or, when a request's handler is still running then
(the client left mid-call), when that handler ends: so the bound is on connections and on
work in flight together. At the bound, a new connection takes the place of the idle
keep-alive connection that was least recently active, which is closed; with none idle, it is
answered at once, 503 `too_many_connections` with `Retry-After: 1` (the openai SDK retries
it), and closed. In a gateway, a client address (an IPv6 client: its /`client_ipv6_prefix`
network) holds at most `max_per_peer` connections; beyond, 429
`too_many_connections_from_peer` the same way. A trusted proxy (`trusted_proxies`) is not
counted per address: its clients' addresses are known only from the headers of each request,
after the connection is taken, and the proxy in front bounds its own connections. Nor is a
sidecar's one client, the app in its pod. Each process (each `--workers` worker) counts its
own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy.gateway.connection import Counted, Refused, Reset, refusal

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 1024
"""`--max-connections`' default, per listener and process."""
MAX_PER_PEER = 64
"""`--max-connections-per-peer`' default."""
KEEP_ALIVE_S = 10.0
"""`--keep-alive-timeout`' default: longer than the 5 s after which httpx (the openai SDK)
drops an idle connection itself, so a client rarely reuses one the proxy is closing."""
WARN_EVERY_S = 60.0
LINGER_S = 10.0
"""aiohttp's lingering close: enough for a client sending a body of megabytes to read the
answer that refused it."""
ADMIN_LINGER_S = 2.0
"""The admin listener's: its bodies are at most 64 KiB (admin.api.MAX_BODY_BYTES)."""

RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
PeerKey = Callable[[str], "str | None"]
"""A client address → what it is counted under, None for an address not counted (a trusted
proxy)."""


def runner(
    app: web.Application, header_timeout: float, lingering: float = LINGER_S
) -> web.AppRunner:
    """An AppRunner whose connections must send a request's headers within `header_timeout`
    seconds of opening or of their previous answer (aiohttp's keep-alive timeout), and are
    closed at most `lingering` seconds after an answer that left a body unread."""
    return web.AppRunner(
        app, access_log=None, keepalive_timeout=header_timeout, lingering_time=lingering
    )


class BoundedSite(web.BaseSite):
    """A TCP listener holding at most `max_connections` places (module docstring)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_per_peer: int = MAX_PER_PEER,
        keep_alive: float = KEEP_ALIVE_S,
        peer_key: PeerKey = lambda address: address,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner)
        self._host, self._port, self._reuse_port = host, port, reuse_port
        self._limits = Limits(max_connections, max_per_peer, keep_alive, peer_key)

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "the runner is set up before its sites start"
        gate = Gate(server, self._limits)
        server.request_handler = gate.counting(server.request_handler)
        self._server = await asyncio.get_running_loop().create_server(
            gate,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port,
        )


class Limits:
    def __init__(self, places: int, per_peer: int, keep_alive: float, peer_key: PeerKey) -> None:
        self.places, self.per_peer, self.keep_alive = places, per_peer, keep_alive
        self.peer_key = peer_key


class Gate:
    """The listener's protocol factory and its places: aiohttp's request handler, counted,
    while a place is free or an idle connection can give one up; else a refusal."""

    def __init__(self, server: web.Server, limits: Limits) -> None:
        self._server, self.limits = server, limits
        self.limit = limits.places
        self.open = 0
        """Places taken: connections open, and handlers still running for closed ones."""
        self.refusing = 0
        self.connections: dict[asyncio.Protocol, Counted] = {}
        """Open connections by aiohttp's handler, least recently active first."""
        self.peers: Counter[str] = Counter()
        self._warned = 0.0
        self.refusal = refusal(
            503,
            f"The proxy holds {self.limit} connections, its limit (--max-connections); "
            "retry shortly.",
            "service_unavailable",
            "too_many_connections",
        )
        self.peer_refusal = refusal(
            429,
            f"This address holds {limits.per_peer} connections to the proxy, its limit per "
            "client (--max-connections-per-peer); reuse them, or retry shortly.",
            "rate_limit_error",
            "too_many_connections_from_peer",
        )

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.limit and not self._evict_idle():
            self._warn()
            return Refused(self, self.refusal) if self.refusing < self.limit else Reset()
        self.open += 1
        handler = self._server()
        counted = Counted(handler, self)
        self.connections[handler] = counted
        return counted

    def counting(self, handle: RequestHandler) -> RequestHandler:
        """aiohttp's request handler, marking its connection busy while a request runs."""

        async def counted(request: web.BaseRequest) -> web.StreamResponse:
            connection = self.connections.get(request.protocol)
            if connection is None:
                return await handle(request)
            connection.started()
            try:
                return await handle(request)
            finally:
                connection.ended()

        return counted

    def touch(self, connection: Counted) -> None:
        """`connection` was active: it becomes the last to give up its place."""
        if self.connections.pop(connection.handler, None) is not None:
            self.connections[connection.handler] = connection

    def release(self) -> None:
        self.open -= 1

    def _evict_idle(self) -> bool:
        """Close the least recently active idle connection and take its place; False if none
        is idle."""
        for connection in self.connections.values():
            if connection.idle():
                connection.evict()
                return True
        return False

    def _warn(self) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning(
                "refusing connections: %d places taken, the limit (--max-connections %d)",
                self.open,
                self.limit,
            )
