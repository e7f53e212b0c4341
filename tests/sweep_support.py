"""Helpers for the sweeper's and the ledger bounds' tests: reach into a store to set up what no
API call makes (a sum at the edge of the safe range, an instance that went silent), and read what
only the store shows (its instances, its script calls)."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

import redis

from proxy.core.types import ReservationSettings
from proxy.store.ledger import MemoryLedger, RedisLedger
from proxy.store.ledger.base import BudgetLine, Candidate, Quotas, Reservation, ReserveRequest
from proxy.store.ledger.meta import GENERATION
from proxy.store.redis import layout
from proxy.store.redis.clients import open_client

Store = MemoryLedger | RedisLedger
SAFE = 2**53 - 1
"""The largest magnitude the README lets a ledger sum reach."""


def ledger_alone(url: str, settings: ReservationSettings | None = None, **kwargs: Any) -> Store:
    """A ledger on `url` with nothing else of the store around it (the reclaim tests drive one
    ledger by hand, as a replica's sweeper does)."""
    settings = settings or ReservationSettings()
    if url == "memory://":
        return MemoryLedger(settings, "me", **kwargs)
    return RedisLedger(url, settings, "me", **kwargs)


def tenant_line(tenant: str, limit: int = 10**9) -> BudgetLine:
    return BudgetLine("tenant", tenant, "USD", "month", limit)


def ask(
    tenant: str,
    rid: str,
    usd: int = 100,
    *,
    ttl_ms: int | None = None,
    shadow: bool = False,
    quotas: Quotas | None = None,
) -> ReserveRequest:
    """One USD line on the tenant; `ttl_ms=0` makes it due at once."""
    return ReserveRequest(
        tenant,
        rid,
        [tenant_line(tenant)],
        [Candidate({"USD": usd})],
        shadow=shadow,
        quotas=quotas or Quotas(),
        ttl_ms=ttl_ms,
    )


async def reserved(ledger: Store, request: ReserveRequest) -> Reservation:
    result = await ledger.reserve(request)
    assert result.reservation is not None, result
    return result.reservation


async def set_sum(ledger: Store, url: str, tenant: str, field: str, value: int) -> None:
    """Write a ledger sum directly (what many past commits would have left)."""
    if isinstance(ledger, MemoryLedger):
        ledger._tenants[tenant].ledger[field] = value
        return
    client = open_client(url, decode_responses=True)
    await client.hset(layout.tenant_keys(tenant)[0], field, str(value))
    await client.aclose()


async def sums(ledger: Store, tenant: str) -> tuple[int, int]:
    """(spent, reserved) of the tenant's one USD line."""
    (row,) = [r for r in await ledger.balances(tenant) if r.unit == "USD"]
    return row.spent, row.reserved


async def silent_instance(ledger: Store, url: str, owner: str) -> None:
    """An instance whose last heartbeat was long ago (a replica that died)."""
    if isinstance(ledger, MemoryLedger):
        ledger._instances[owner] = 0
        return
    client = open_client(url, decode_responses=True)
    await client.zadd(layout.INSTANCES, {owner: 0})
    await client.aclose()


async def instances(ledger: Store, url: str) -> set[str]:
    if isinstance(ledger, MemoryLedger):
        return set(ledger._instances)
    client = open_client(url, decode_responses=True)
    found = cast(list[str], await client.zrange(layout.INSTANCES, 0, -1))
    await client.aclose()
    return set(found)


async def generation_fields(ledger: Store, url: str, tenant: str) -> list[str]:
    """The tenant's RESET_SPENT generation entries that expire (`q|gen|reset|…`, `q|gen|exp|…`;
    not the tenant's count of resets), which counters() leaves out."""
    if isinstance(ledger, MemoryLedger):
        names = list(ledger._tenants[tenant].counters.values)
    else:
        client = open_client(url, decode_responses=True)
        names = cast(list[str], await client.hkeys(layout.tenant_keys(tenant)[0]))
        await client.aclose()
    expiring = (GENERATION + "reset|", GENERATION + "exp|")
    return sorted(n for n in names if n.startswith(expiring))


async def script_calls(url: str) -> int:
    """How many EVALSHA the (single) Redis at `url` has run."""
    client = open_client(url, decode_responses=True)
    stats = cast(dict[str, Any], await client.info("commandstats"))
    await client.aclose()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


# --- the soak: a store as a large deployment leaves it ----------------------------------------

HOUR_MS, DAY_MS = 3_600_000, 86_400_000
WHALE = "whale"
WHALE_LINE = "tenant|whale|USD|-"
"""The whale's one budget line: a lifetime one, so nothing here depends on the calendar."""


def redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def fill(port: int, tenants: int, tombstones: int, open_calls: int, dead: str) -> None:
    """Write straight into Redis what a long-running deployment leaves: `tenants` idle tenants
    (registered and indexed, an entry each that expires in a month), and one tenant, the whale,
    with `tombstones` settled records (a tenth of them expired, waiting to be dropped) and
    `open_calls` open reservations of 100 units owned by `dead`, whose heartbeat is long gone."""
    client = redis.Redis(port=port, decode_responses=True)
    now = redis_ms(client)
    pipe = client.pipeline(transaction=False)
    for start in range(0, tenants, 1000):
        names = [f"idle{i:06d}" for i in range(start, min(start + 1000, tenants))]
        pipe.sadd(layout.TENANTS, *names)
        pipe.zadd(layout.DUE, dict.fromkeys(names, now + 30 * DAY_MS))
        for name in names:
            ledger, ledger_exp, *_ = layout.tenant_keys(name)
            prefix = f"tenant|{name}|USD|m20000101"
            pipe.hset(ledger, f"{prefix}|spent", 5)
            pipe.zadd(ledger_exp, {prefix: now + 30 * DAY_MS})
        pipe.execute()
    _, _, resv, resv_exp, *_ = layout.tenant_keys(WHALE)
    settled = f"COMMITTED {now - DAY_MS} {now} live-1 0:1:-:-:0:- USD=1 USD=1 - {WHALE_LINE}"
    for start in range(0, tombstones, 1000):
        ids = [f"t{i:07d}" for i in range(start, min(start + 1000, tombstones))]
        pipe.hset(resv, mapping=dict.fromkeys(ids, settled))
        expired = tombstones // 10
        pipe.zadd(
            resv_exp, {rid: now - 1000 if int(rid[1:]) < expired else now + HOUR_MS for rid in ids}
        )
        if start % 20_000 == 0:
            pipe.execute()
    held = f"OPEN {now} {now + HOUR_MS} {dead} 0:1:-:-:0:- USD=100 - - {WHALE_LINE}"
    opened = [f"o{i:07d}" for i in range(open_calls)]
    pipe.hset(resv, mapping=dict.fromkeys(opened, held))
    pipe.zadd(resv_exp, dict.fromkeys(opened, now + HOUR_MS))
    pipe.hset(layout.tenant_keys(WHALE)[0], f"{WHALE_LINE}|reserved", 100 * open_calls)
    pipe.sadd(layout.TENANTS, WHALE)
    pipe.zadd(layout.DUE, {WHALE: now - 1000})
    pipe.zadd(layout.INSTANCES, {dead: 0})
    pipe.execute()
    client.close()


class Probe(threading.Thread):
    """From its own thread and connection, every 10 ms: how long a PING takes, and how old
    `owner`'s heartbeat is by the store's clock (an instance is presumed dead at 3 intervals)."""

    def __init__(self, port: int, owner: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis(port=port, decode_responses=True)
        self.owner = owner
        self.halt = threading.Event()
        self.pings: list[float] = []
        self.oldest_beat_ms = 0
        self.errors: list[str] = []
        """What Redis answered instead (BUSY: a script held it past its time limit)."""

    def run(self) -> None:
        while not self.halt.wait(0.01):
            try:
                self.look()
            except redis.RedisError as exc:
                self.errors.append(str(exc))

    def look(self) -> None:
        started = time.perf_counter()
        self.client.ping()
        self.pings.append(time.perf_counter() - started)
        beat = self.client.zscore(layout.INSTANCES, self.owner)
        if beat is not None:
            self.oldest_beat_ms = max(self.oldest_beat_ms, redis_ms(self.client) - int(beat))

    def stop(self) -> None:
        self.halt.set()
        self.join()
        self.client.close()
