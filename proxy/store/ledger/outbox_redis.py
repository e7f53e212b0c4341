"""The usage-event outbox on Redis (outbox.py says what it holds), mixed into RedisLedger.

Each tenant's entries are a stream, `cy:v1:{t:<tenant>}:outbox`, written by the settling
scripts (lua/outbox.lua). Which tenants hold entries is the set `cy:v1:outbox_tenants`, written
after the script (it has no tenant tag, so no script may touch it in a cluster); a crash between
the two leaves a stream nobody indexed, which `outbox_read(rescan=True)` finds by walking every
tenant of `cy:v1:tenants` (SSCAN, and XLEN pipelined, RESCAN_BATCH tenants a round trip: the
sender does so at start and every hour). A tenant is dropped
from the index when its stream is read empty, then its stream is looked at once more and the
tenant indexed again if an entry arrived meanwhile: a settle whose index write ran before the
drop is seen by that second look, one after it indexes the tenant itself.

One sender at a time drains the store: `cy:v1:outbox_sender` names it (SET NX with a TTL,
extended while it holds it). Several instances share one store, and events are delivered in
batches: a lock is simpler than a consumer group per sink per stream, and the work is small.
Acknowledging deletes the delivered entries, and the stream once it is empty, in one script
(lua/outbox_ack.lua): no empty stream is left behind per tenant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from proxy.store.ledger.outbox import DEFAULT_BOUND, OutboxEntry
from proxy.store.redis import layout

RESCAN_BATCH = 1000


class RedisOutbox:
    """Provides `Outbox` on the `_client` of RedisLedger."""

    _client: Redis | RedisCluster
    _run: Callable[[str, str, Sequence[str]], Awaitable[Any]]
    usage_events: bool = False
    outbox_bound: int = DEFAULT_BOUND

    async def outbox_noted(self, tenant: str) -> None:
        """Index `tenant` as holding entries (after a script that added one)."""
        await self._client.sadd(layout.OUTBOX_TENANTS, tenant)

    async def _outbox_tenants(self) -> list[str]:
        return sorted(cast(set[str], await self._client.smembers(layout.OUTBOX_TENANTS)))

    async def outbox_read(self, count: int, *, rescan: bool = False) -> list[OutboxEntry]:
        if rescan:
            await self._rescan()
        out: list[OutboxEntry] = []
        for tenant in await self._outbox_tenants():
            rows = await self._client.xrange(layout.outbox_key(tenant), count=count - len(out))
            if not rows:
                await self._forget(tenant)
                continue
            out += [OutboxEntry(tenant, str(i), cast(dict[str, str], f)) for i, f in rows]
            if len(out) >= count:
                break
        return out

    async def _rescan(self) -> None:
        """Index every tenant of `cy:v1:tenants` whose outbox holds entries, RESCAN_BATCH
        tenants a round trip."""
        batch: list[str] = []
        async for tenant in self._client.sscan_iter(layout.TENANTS, count=RESCAN_BATCH):
            batch.append(cast(str, tenant))
            if len(batch) == RESCAN_BATCH:
                await self._index_holding(batch)
                batch = []
        await self._index_holding(batch)

    async def _index_holding(self, tenants: list[str]) -> None:
        if not tenants:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.xlen(layout.outbox_key(tenant))
            lengths = await pipe.execute()
        holding = [tenant for tenant, n in zip(tenants, lengths, strict=True) if n]
        if holding:
            await self._client.sadd(layout.OUTBOX_TENANTS, *holding)

    async def _forget(self, tenant: str) -> None:
        """Unindex a tenant read empty, unless an entry arrived meanwhile (module docstring)."""
        await self._client.srem(layout.OUTBOX_TENANTS, tenant)
        if await self._client.xlen(layout.outbox_key(tenant)):
            await self.outbox_noted(tenant)

    async def outbox_ack(self, entries: Sequence[OutboxEntry]) -> None:
        by_tenant: dict[str, list[str]] = {}
        for entry in entries:
            by_tenant.setdefault(entry.tenant, []).append(entry.entry_id)
        for tenant, ids in by_tenant.items():
            await self._run("outbox_ack", tenant, ids)  # and DEL once empty: lua/outbox_ack.lua

    async def outbox_pending(self) -> int:
        tenants = await self._outbox_tenants()
        async with self._client.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.xlen(layout.outbox_key(tenant))
            return sum(await pipe.execute())

    async def outbox_dropped(self) -> int:
        tenants = await self._outbox_tenants()
        async with self._client.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.hget(layout.tenant_keys(tenant)[4], "outbox_dropped")  # :meta
            return sum(int(n or 0) for n in await pipe.execute())

    async def outbox_claim(self, owner: str, ttl_ms: int) -> bool:
        if await self._client.set(layout.OUTBOX_SENDER, owner, nx=True, px=ttl_ms):
            return True
        if await self._client.get(layout.OUTBOX_SENDER) != owner:
            return False
        await self._client.pexpire(layout.OUTBOX_SENDER, ttl_ms)
        return True
