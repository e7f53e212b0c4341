"""Which tenant opened which MCP session (issue 20; the front is proxy/mcp/).

An MCP server names a session in the `Mcp-Session-Id` it answers an initialize with. The proxy
binds that id to the caller's tenant (`bind`), and lets a later request carrying it through only
when the caller's tenant bound it (`holds`, which also refreshes its life); DELETE `forget`s it.
A session is keyed under the tenant (and the server), so another tenant's lookup simply finds
nothing: no tenant can ride on a session it learned of.

The memory store serves one process, bounded (MAX_BINDINGS, TENANT_BINDINGS; the oldest dropped:
its client is answered 404 and initializes again). The Redis store uses plain commands under
the tenant's hash tag (redis/layout.py mcp_session_key; on a cluster too: one key each, on the
tenant's master). Session ids are hashed (sha256) into the key, since a server may make them
long. Any Redis error is LedgerUnavailable (the replay store's boundary, redis/errors.REPLAYS).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Protocol

from proxy.core.bounded import Bounded
from proxy.store.boundary import GuardedStore
from proxy.store.redis.clients import Client, store_client
from proxy.store.redis.errors import REPLAYS
from proxy.store.redis.layout import mcp_session_key

MAX_BINDINGS = 100_000
"""memory://: sessions bound at most, all tenants together; beyond, the oldest are dropped."""
TENANT_BINDINGS = 10_000
"""memory://: sessions one tenant has bound at most; beyond, that tenant's oldest are dropped."""


class McpSessions(Protocol):
    async def bind(self, tenant: str, server: str, session: str, ttl_ms: int) -> None:
        """`session` of `server` is the tenant's for `ttl_ms` (again, if it was already)."""
        ...

    async def holds(self, tenant: str, server: str, session: str, ttl_ms: int) -> bool:
        """Whether this tenant bound `session` of `server` and it has not expired; if so, it
        lives `ttl_ms` from now."""
        ...

    async def forget(self, tenant: str, server: str, session: str) -> None:
        """The session ended: it is no longer the tenant's."""
        ...

    async def close(self) -> None: ...


def session_digest(session: str) -> str:
    """The session id as the stores key it: hex sha256 (ids may be long)."""
    return hashlib.sha256(session.encode()).hexdigest()


def check_ttl(ttl_ms: int) -> int:
    if type(ttl_ms) is not int or ttl_ms < 1:
        raise ValueError(f"an MCP session's ttl_ms must be a positive integer, got {ttl_ms!r}")
    return ttl_ms


Key = tuple[str, str, str]
"""(tenant, server, session digest)."""


class MemorySessions:
    """One process's bindings, oldest first: at most `max_bindings` in all and
    `tenant_bindings` per tenant, beyond which the oldest go (one tenant's push out only its
    own until all together reach the global bound). Binding or holding a session makes it the
    newest. Expired bindings are dropped when looked up, or as the oldest."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_bindings: int | None = None,
        tenant_bindings: int | None = None,
    ) -> None:
        """The bounds default to the module's constants, read when the store is made."""
        self._clock = clock
        self._all: Bounded[Key, float] = Bounded(
            MAX_BINDINGS if max_bindings is None else max_bindings,
            on_drop=lambda key, _: self._untrack(key),
        )
        self._tenant_max = TENANT_BINDINGS if tenant_bindings is None else tenant_bindings
        self._by_tenant: dict[str, dict[Key, None]] = {}
        """Each tenant's bindings, oldest first (dicts keep insertion order)."""

    async def bind(self, tenant: str, server: str, session: str, ttl_ms: int) -> None:
        self._put(_key(tenant, server, session), check_ttl(ttl_ms))

    async def holds(self, tenant: str, server: str, session: str, ttl_ms: int) -> bool:
        check_ttl(ttl_ms)
        key = _key(tenant, server, session)
        expires = self._all.get(key)
        if expires is None:
            return False
        if expires <= self._clock():
            self._drop(key)
            return False
        self._put(key, ttl_ms)
        return True

    async def forget(self, tenant: str, server: str, session: str) -> None:
        self._drop(_key(tenant, server, session))

    async def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._all)

    def _put(self, key: Key, ttl_ms: int) -> None:
        self._drop(key)
        own = self._by_tenant.setdefault(key[0], {})
        while len(own) >= self._tenant_max:
            self._drop(next(iter(own)))
        own[key] = None
        self._all.put(key, self._clock() + ttl_ms / 1000)

    def _drop(self, key: Key) -> None:
        if self._all.pop(key) is not None:
            self._untrack(key)

    def _untrack(self, key: Key) -> None:
        """A binding left the table: it no longer counts against its tenant."""
        own = self._by_tenant.get(key[0])
        if own is None:
            return
        own.pop(key, None)
        if not own:
            del self._by_tenant[key[0]]


def _key(tenant: str, server: str, session: str) -> Key:
    return (tenant, server, session_digest(session))


class RedisSessions(GuardedStore):
    """One key per binding under the tenant's hash tag: `SET PX` binds, `PEXPIRE` both tells
    whether the tenant holds a session and refreshes it (one round trip), `DEL` forgets. On the
    store's shared `client` (store/open.py), or on one of its own, closed with it."""

    boundary = REPLAYS
    store_name = "MCP session store"

    def __init__(self, url: str, *, client: Client | None = None) -> None:
        self._owns_client = client is None
        self._client: Client = store_client(url) if client is None else client

    async def bind(self, tenant: str, server: str, session: str, ttl_ms: int) -> None:
        key = mcp_session_key(tenant, server, session_digest(session))
        await self._client.set(key, "1", px=check_ttl(ttl_ms))

    async def holds(self, tenant: str, server: str, session: str, ttl_ms: int) -> bool:
        key = mcp_session_key(tenant, server, session_digest(session))
        return bool(await self._client.pexpire(key, check_ttl(ttl_ms)))

    async def forget(self, tenant: str, server: str, session: str) -> None:
        await self._client.delete(mcp_session_key(tenant, server, session_digest(session)))

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
