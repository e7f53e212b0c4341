"""The request ids in flight in each MCP session, so that no two share one.

The mcp SDK's stateful server files a POST's answer stream under `str(id)` in its session: a
second request with an id in flight there (7 and "7" alike) takes over the first's answer, and
the first POST waits out `timeout_seconds`, a tool call then settled as a timeout (which a
`charge_on_error: released` tool releases, though it ran). So a request whose `str(id)` is in
flight in its session is refused before anything is reserved or sent. A request without a
session cannot collide: the SDK gives each its own transport (its stateless mode, and every
request of the 2026-07-28 era).

In memory, one table per process (per router): it holds when a session's requests reach one
replica (README). An id is held until its handler ends, which for a tool call is after its
settle (aiohttp does not cancel a handler whose client left)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from proxy.mcp.jsonrpc import Message, RpcRefusal

Key = tuple[str, str, str, str]
"""(tenant, server, session id, str(request id))."""


class InFlight:
    def __init__(self) -> None:
        self._held: set[Key] = set()

    @contextmanager
    def holding(
        self, tenant: str, server: str, session: str | None, message: Message
    ) -> Iterator[None]:
        """Hold the message's id in its session while the body runs; RpcRefusal (409) when
        another request holds it. Nothing is held for a request without a session or an id."""
        if session is None or not message.is_request or message.id is None:
            yield
            return
        key = (tenant, server, session, str(message.id))
        if key in self._held:
            refusal = RpcRefusal(
                f"Request id {message.id!r} is already in flight in this session: give each "
                "request an id of its own (the server files answers under the id as a string).",
                status=409,
            )
            refusal.id = message.id
            raise refusal
        self._held.add(key)
        try:
            yield
        finally:
            self._held.discard(key)
