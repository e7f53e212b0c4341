"""What only tests do to a store, kept off the production interfaces (store/ledger/base.py,
store/tenants/base.py): set a tenant's status or its clock, sweep one tenant now, read its raw
quota counters. Each reaches the store's internals: the memory ledger's state, or the Redis keys
through the ledger's own client and scripts. Each takes a ledger, or the stores it is one of."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from proxy.core.errors import AmountOutOfRange
from proxy.store.ledger import MemoryLedger, RedisLedger
from proxy.store.ledger.base import Ledger, TenantStatus
from proxy.store.ledger.meta import AGGREGATE, GENERATION
from proxy.store.open import Stores
from proxy.store.redis import layout

Hooked = Ledger | Stores


def _store(hooked: Hooked) -> MemoryLedger | RedisLedger:
    ledger = hooked.ledger if isinstance(hooked, Stores) else hooked
    assert isinstance(ledger, MemoryLedger | RedisLedger), ledger
    return ledger


async def set_status(ledger: Hooked, tenant: str, status: TenantStatus) -> None:
    """Write the tenant's status in `:meta` (a tenant the store may not even have); the reserve
    checks it atomically."""
    store = _store(ledger)
    if isinstance(store, MemoryLedger):
        store.state.tenant(tenant).meta["status"] = status
        return
    await store.scripts.client.hset(layout.tenant_keys(tenant)[4], "status", status)


async def set_clock_offset(ledger: Hooked, tenant: str, offset_ms: int) -> None:
    """Shift the clock the tenant's operations see (periods, deadlines, audit: store/ledger/
    meta.py `clock_offset_ms`). On Redis the tenant is also marked due now: its index entry is
    in the clock it had (the next pass sweeps it and indexes it again in the new one)."""
    store = _store(ledger)
    if isinstance(store, MemoryLedger):
        store.state.tenant(tenant).meta["clock_offset_ms"] = str(offset_ms)
        return
    scripts = store.scripts
    await scripts.client.hset(layout.tenant_keys(tenant)[4], "clock_offset_ms", offset_ms)
    due = layout.due_key(tenant, scripts.cluster)
    await scripts.know_shard(due)
    await scripts.client.zadd(due, {tenant: 0})


async def sweep_tenant(ledger: Hooked, tenant: str, dead_owners: Sequence[str] = ()) -> int:
    """Resolve the tenant's overdue reservations (past the absolute cap, or owned by a dead
    instance) per policy, drop expired tombstones and entries: one tenant's part of a sweeper
    pass, whole. Returns how many it resolved. Raises AmountOutOfRange when charging an expired
    reservation would take a sum out of the safe range, after resolving the others: it stays
    OPEN, due again a while later (sweeping.STUCK_RETRY_MS)."""
    store = _store(ledger)
    stuck: AmountOutOfRange | None
    if isinstance(store, MemoryLedger):
        resolved, stuck = await store._sweep_tenant(tenant, set(dead_owners))
    else:
        cursor = "0" if dead_owners else "-"
        swept = await store._sweep_tenant(tenant, tuple(dead_owners), cursor)
        resolved, stuck = swept.resolved, swept.stuck
    if stuck is not None:
        raise stuck
    return resolved


async def quota_counters(ledger: Hooked, tenant: str) -> dict[str, int | str]:
    """The tenant's raw quota fields, by name: `q|conc|<level>|<value>` (calls in flight),
    `q|runs|<day id>` (runs first seen that day), `q|run|<run>|steps`, `q|run|<run>|day` (the
    day id the run was first seen: the one value that is a string), `q|rpm|tat` and `q|tpm|tat`
    (theoretical arrival times, in µs); not the denial aggregates or reset generations."""
    store = _store(ledger)
    if isinstance(store, MemoryLedger):
        entries: dict[str, int | str] = dict(store.state.tenant(tenant).counters.snapshot())
    else:
        client = store.scripts.client
        raw = await client.hgetall(layout.tenant_keys(tenant)[0])
        raw |= await client.hgetall(layout.users_key(tenant))  # end users' (lua/common.lua hkey)
        entries = {
            name: value if name.startswith("q|run|") and name.endswith("|day") else int(value)
            for name, value in cast(dict[str, str], raw).items()
            if name.startswith("q|")
        }
    return {k: v for k, v in entries.items() if not k.startswith((AGGREGATE, GENERATION))}
