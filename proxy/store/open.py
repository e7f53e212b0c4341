"""One store URL, every store on it: `open_store` is the one place that picks the backend by the
URL's scheme (as limits' `storage_from_string`).

    memory://               this process only
    redis[s]://host:port/db one Redis; redis[s]+cluster://host:port,…: a Redis Cluster
                            (redis/clients.py)

On memory:// the tenant store works on the ledger's state; on Redis on the ledger's scripts
(ledger/scripts.py), so that the reserve reads what the tenant store writes, atomically. On Redis
every store shares one redis-py client (redis/clients.store_client): one pool, one set of
timeouts. Only the ledger's scripts on one Redis go over a connection of their own, the pipelined
wire: they are the hot path, and redis-py's per-command cost is what the wire exists to avoid
(ledger/scripts.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from proxy.core.types import ReservationSettings
from proxy.store.api_keys.memory import MemoryKeyStore
from proxy.store.api_keys.records import KeyStore, now_ms
from proxy.store.api_keys.redis import RedisKeyStore
from proxy.store.idempotency import IdempotencyStore, MemoryIdempotency, RedisIdempotency
from proxy.store.ledger.base import Ledger
from proxy.store.ledger.common import wall_clock_ms
from proxy.store.ledger.memory import MemoryLedger
from proxy.store.ledger.redis import RedisLedger
from proxy.store.mcp_sessions import McpSessions, MemorySessions, RedisSessions
from proxy.store.redis.clients import Client, check_url, is_redis, store_client
from proxy.store.replays import MemoryReplays, RedisReplays, ReplayStore
from proxy.store.tenants.base import TenantStore
from proxy.store.tenants.memory import MemoryTenants
from proxy.store.tenants.redis import RedisTenants


class Closing(Protocol):
    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Stores:
    """Every store behind one URL. `close` closes what `open_store` opened (not a ledger or key
    store the caller gave it), then the shared client."""

    ledger: Ledger
    tenants: TenantStore
    api_keys: KeyStore
    replays: ReplayStore
    """Client idempotency keys of budgeted calls (gateway/replay.py)."""
    idempotency: IdempotencyStore
    """Idempotency keys of admin calls (admin/api.py)."""
    mcp_sessions: McpSessions
    """Which tenant bound which MCP session (proxy/mcp/)."""
    owned: tuple[Closing, ...] = ()
    client: Client | None = None
    """The redis-py client the Redis stores share; None on memory://."""

    async def close(self) -> None:
        for store in self.owned:
            await store.close()
        if self.client is not None:
            await self.client.aclose()


def open_store(
    url: str,
    settings: ReservationSettings,
    *,
    owner: str | None = None,
    clock: Callable[[], int] | None = None,
    ledger: Ledger | None = None,
    api_keys: KeyStore | None = None,
) -> Stores:
    """The stores for `url`; ValueError names a URL that cannot work. Nothing connects until the
    first call.

    `owner` names this instance in reservations and heartbeats (default: a fresh
    `<hostname>-<pid>-<hex>`). `clock` (ms) is the time the stores that keep it in this process
    read (the memory ledger, the key stores' expiries): tests move it. A `ledger` or `api_keys`
    given is used as it is and left open by `close`; a ledger must be of the URL's kind (the
    tenant store is built on it), a MemoryLedger for memory://, a RedisLedger for Redis."""
    check_url(url)
    if is_redis(url):
        return _redis(url, settings, owner, clock or now_ms, ledger, api_keys)
    return _memory(settings, owner, clock, ledger, api_keys)


def _memory(
    settings: ReservationSettings,
    owner: str | None,
    clock: Callable[[], int] | None,
    ledger: Ledger | None,
    api_keys: KeyStore | None,
) -> Stores:
    if ledger is None:
        ledger = MemoryLedger(settings, owner, clock=clock or wall_clock_ms)
    if not isinstance(ledger, MemoryLedger):
        raise TypeError(f"memory:// keeps its tenants in a MemoryLedger, not {ledger!r}")
    return Stores(
        ledger=ledger,
        tenants=MemoryTenants(ledger.state),
        api_keys=MemoryKeyStore(clock or now_ms) if api_keys is None else api_keys,
        replays=MemoryReplays(claim_ms=settings.cap_ms),
        idempotency=MemoryIdempotency(),
        mcp_sessions=MemorySessions(),
    )


def _redis(
    url: str,
    settings: ReservationSettings,
    owner: str | None,
    clock: Callable[[], int],
    ledger: Ledger | None,
    api_keys: KeyStore | None,
) -> Stores:
    if ledger is not None and not isinstance(ledger, RedisLedger):
        raise TypeError(f"a Redis store keeps its tenants beside a RedisLedger, not {ledger!r}")
    client = store_client(url)
    owned: list[Closing] = []
    if ledger is None:
        ledger = RedisLedger(url, settings, owner, client=client)
        owned.append(ledger)
    if api_keys is None:
        api_keys = RedisKeyStore(url, clock, client=client)
        owned.append(api_keys)
    replays = RedisReplays(url, settings.cap_ms, client=client)
    idempotency = RedisIdempotency(url, client=client)
    mcp_sessions = RedisSessions(url, client=client)
    return Stores(
        ledger=ledger,
        tenants=RedisTenants(ledger.scripts),
        api_keys=api_keys,
        replays=replays,
        idempotency=idempotency,
        mcp_sessions=mcp_sessions,
        owned=(*owned, replays, idempotency, mcp_sessions),
        client=client,
    )
