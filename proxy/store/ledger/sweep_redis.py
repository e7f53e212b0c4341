"""The sweeper's pass on Redis (sweeping.py says what both stores share). Three phases, each a
sequence of short commands, none of which holds Redis for long:

1. **Dead owners.** Instances whose heartbeat is older than 3 intervals are dead. Their open
   reservations are reclaimed tenant by tenant, over the tenants the due index says may hold an
   open reservation (due within `cap_ms`: an open reservation's deadline is at most that far),
   each with lua/sweep.lua's HSCAN of `:resv` (`BATCH` records a call). The index is read with
   ZSCAN, not by due time: a tenant's due time moves while a reclaim runs (a new call with a
   short deadline moves it to the front), and a walk by due time from where it stopped would
   pass such a tenant by, while ZSCAN returns every member present throughout at least once (a
   tenant holding an open reservation is, at a due time within the cap). Where it is, index
   cursor, tenant and record cursor, survives the pass, and a change in the dead does not
   restart it (an owner that dies meanwhile waits for the next reclaim; one alive again is left
   alone); once every such tenant was visited the reclaim's dead are forgotten. Neither a
   tenant that failed (logged and counted) nor a call whose charge would leave the safe range
   (left open, reported) keeps them listed: every open reservation keeps its deadline, and the
   due part of a sweep resolves it there whoever owns it, so forgetting an owner loses nothing;
   the reclaim only comes early.
2. **Due tenants.** The due index (`cy:v1:due`, store/redis/layout.py) holds each tenant at its
   earliest due time, written by every script; a pass reads it in pages up to now, so idle tenants
   cost nothing, and sweeps each one for at most `TENANT_ROUNDS` calls.
3. **The registry walk.** A few tenants of `cy:v1:tenants` per pass (SSCAN, a cursor kept
   between passes) are swept whether the index names them or not: reservations made by a
   previous release, which kept no index, are found within one walk of the registry.

In a Redis Cluster the index is one key per slot (`cy:v1:due:{<n>}`); the pass reads each key
`cy:v1:due_shards` lists, in turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from proxy.core.errors import AmountOutOfRange, range_error
from proxy.core.types import ReservationSettings
from proxy.store.ledger.base import Crossing, ExpiryAlerts
from proxy.store.ledger.common import expiry_limits
from proxy.store.ledger.sweeping import (
    BATCH,
    STUCK_RETRY_MS,
    SWEEP_BUDGET_S,
    TENANT_ROUNDS,
    Budget,
    SweepErrors,
)
from proxy.store.redis import layout
from proxy.store.redis.clients import Client

PAGE = 100
"""Tenants read from the due index per command."""
SCAN = 1000
"""Tenants of the due index a reclaim reads per ZSCAN (about a millisecond of Redis time)."""
WALK = 100
"""Tenants of the registry swept per pass (phase 3)."""

Position = tuple[float, str]
"""Where a pass is in one index key: the last (score, tenant) it took."""


@dataclass(slots=True)
class _Reclaim:
    """A reclaim of dead owners' reservations in progress (phase 1)."""

    dead: tuple[str, ...]
    shards: list[str]
    shard: int = 0
    scan: int = 0
    """The ZSCAN cursor in `shards[shard]`."""
    pending: list[str] = field(default_factory=list)
    """The rest of the tenants the last ZSCAN found."""
    tenant: str | None = None
    cursor: str = "0"
    """lua/sweep.lua's HSCAN cursor in `tenant`'s records."""

    def finished(self) -> bool:
        """Every tenant of the index was visited."""
        return self.tenant is None and not self.pending and self.shard >= len(self.shards)


@dataclass(frozen=True, slots=True)
class _Swept:
    """What sweeping one tenant did: reservations resolved, where its dead-owner scan stopped
    ('-': complete), and the first expiry it had to leave open (`stuck`), if any."""

    resolved: int
    cursor: str
    stuck: AmountOutOfRange | None = None


@dataclass(slots=True)
class _Pass:
    budget: Budget
    now: int
    visited: set[str] = field(default_factory=set)


class RedisSweep(SweepErrors):
    """Mixed into RedisLedger, which provides these (`_run`: scripts.py)."""

    _client: Client
    settings: ReservationSettings
    owner: str
    expiry_alerts: ExpiryAlerts | None
    usage_events: bool
    outbox_bound: int
    _dead_after_ms: int
    _cluster: bool
    _run: Callable[[str, str, Sequence[str]], Awaitable[Any]]
    sweep_budget_s: float = SWEEP_BUDGET_S
    walk_per_pass: int = WALK
    reclaim_scan: int = SCAN
    stuck_retry_ms: int = STUCK_RETRY_MS

    def __init__(self) -> None:
        super().__init__()
        self._reclaim: _Reclaim | None = None
        self._due_next = 0
        self._walk_cursor = 0
        self._walk_pending: list[str] = []

    async def _now_ms(self) -> int:
        """The store's clock (Redis TIME), in milliseconds."""
        seconds, micros = await self._client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def sweep_all(self) -> int:
        """One pass: reclaim the dead's reservations, sweep the due tenants, walk a slice of the
        registry (the module docstring); each phase does at least one step."""
        now = await self._now_ms()
        cutoff = now - self._dead_after_ms
        stale = await self._client.zrangebyscore(layout.INSTANCES, "-inf", cutoff)
        dead = tuple(sorted(o for o in cast(list[str], stale) if o != self.owner))
        run = _Pass(Budget.of(self.sweep_budget_s), now)
        resolved = await self._reclaim_dead(dead, run)
        resolved += await self._sweep_due(run)
        return resolved + await self._walk(run)

    async def _sweep_tenant(
        self,
        tenant: str,
        dead: tuple[str, ...] = (),
        cursor: str = "-",
        *,
        rounds: int | None = None,
        budget: Budget | None = None,
    ) -> _Swept:
        """Call lua/sweep.lua until `tenant` has nothing due and the dead-owner scan from
        `cursor` is complete, or `rounds` calls or `budget` are spent (then the scan's cursor
        says where to resume). An expiry that would leave the safe range is left open and the
        others go on (lua/sweep.lua); the result names the first. The alerts of the charges
        made are announced."""
        alerts = await expiry_limits(self.expiry_alerts, self.settings, tenant)
        marks = ",".join(f"{lv}|{unit}|{bp:d}|{mark:d}" for lv, unit, bp, mark in alerts.marks())
        resolved, calls, crossed = 0, 0, list[Crossing]()
        stuck: AmountOutOfRange | None = None
        try:
            while True:
                args = [self.settings.on_expiry, str(BATCH), marks or "-", cursor]
                bound = self.outbox_bound if self.usage_events else 0
                args += [str(self.stuck_retry_ms), str(bound), *dead]
                done, more, cursor, found, *fired = await self._run("sweep", tenant, args)
                resolved, calls = resolved + int(done), calls + 1
                crossed += [
                    alerts.crossing(fired[i], int(fired[i + 1]), int(fired[i + 2]))
                    for i in range(0, len(fired) - 2, 3)
                ]
                if found != "-" and stuck is None:
                    stuck = range_error(tenant, found.split(" ")[1])
                cursor = "-" if cursor == "0" else cursor
                if more == "0" and cursor == "-":
                    return _Swept(resolved, cursor, stuck)
                if calls == rounds or (budget is not None and not budget.left()):
                    return _Swept(resolved, cursor, stuck)
        finally:
            if resolved and self.usage_events:
                await self._client.sadd(layout.OUTBOX_TENANTS, tenant)  # outbox_redis.py
            if crossed and self.expiry_alerts is not None:
                self.expiry_alerts.crossed(tenant, crossed)

    async def _visit(self, tenant: str, run: _Pass) -> int:
        """Phases 2 and 3: one tenant, isolated, once per pass."""
        if tenant in run.visited:
            return 0
        run.visited.add(tenant)
        work = self._sweep_tenant(tenant, rounds=TENANT_ROUNDS, budget=run.budget)
        swept = await self.isolated(tenant, work)
        if swept is None:
            return 0
        self.stuck(tenant, swept.stuck)
        return swept.resolved

    async def _shards(self) -> list[str]:
        if not self._cluster:
            return [layout.DUE]
        return sorted(cast(set[str], await self._client.smembers(layout.DUE_SHARDS)))

    async def _page(self, shard: str, upto: int, after: Position | None) -> list[Position]:
        """The next tenants of one index key due by `upto`, after `after`: (score, tenant)."""
        low: float | str = "-inf" if after is None else after[0]
        skip = 0
        while True:
            rows = await self._client.zrangebyscore(
                shard, low, upto, start=skip, num=PAGE, withscores=True
            )
            page = [(float(s), str(t)) for t, s in cast(list[tuple[str, float]], rows)]
            fresh = [p for p in page if after is None or p > after]
            if fresh or len(page) < PAGE:
                return fresh
            skip += PAGE  # a page of ties at `after`'s score, all already taken

    async def _sweep_due(self, run: _Pass) -> int:
        """Phase 2, key by key of the index; a pass whose budget ends in a key starts the next
        there (a cluster has up to one a slot)."""
        shards = await self._shards()
        resolved = 0
        for _ in shards:
            shard = shards[self._due_next % len(shards)]
            after: Position | None = None
            while page := await self._page(shard, run.now, after):
                for position in page:
                    resolved += await self._visit(position[1], run)
                    if not run.budget.left():
                        return resolved
                after = page[-1]
            self._due_next += 1
            if not run.budget.left():
                break
        return resolved

    async def _walk(self, run: _Pass) -> int:
        """Phase 3: the next tenants of the registry (what a pass leaves, the next one takes)."""
        if self.walk_per_pass <= 0:
            return 0
        if not self._walk_pending:
            cursor, found = await self._client.sscan(
                layout.TENANTS, self._walk_cursor, count=self.walk_per_pass
            )
            self._walk_cursor, self._walk_pending = int(cursor), cast(list[str], found)
        resolved = 0
        while self._walk_pending:
            resolved += await self._visit(self._walk_pending.pop(), run)
            if not run.budget.left():
                break
        return resolved

    async def _reclaim_dead(self, dead: tuple[str, ...], run: _Pass) -> int:
        """Phase 1: go on with the reclaim in progress, for those of its owners still dead; a
        new one, of every dead owner, when none is. An owner that dies meanwhile waits for the
        next reclaim: starting over whenever the dead change would never finish while replicas
        come and go (one dying every pass)."""
        r = self._reclaim
        if r is not None:
            r.dead = tuple(o for o in r.dead if o in dead)  # one alive again is left alone
            if not r.dead:
                r = self._reclaim = None
        if not dead:
            return 0
        if r is None:
            r = self._reclaim = _Reclaim(dead, await self._shards())
        resolved = 0
        while r.tenant is not None or await self._next_reclaim(r, run):
            assert r.tenant is not None
            run.visited.add(r.tenant)  # its due work is done here too: once per pass
            work = self._sweep_tenant(r.tenant, r.dead, r.cursor, budget=run.budget)
            swept = await self.isolated(r.tenant, work)
            if swept is not None:
                self.stuck(r.tenant, swept.stuck)
                resolved += swept.resolved
                if swept.cursor != "-":
                    r.cursor = swept.cursor
                    return resolved  # the budget ran out inside this tenant: resume here
            r.tenant = None
            if not run.budget.left():
                return resolved
        if not r.finished():
            return resolved  # the budget ran out reading the index: resume there
        await self._client.zrem(layout.INSTANCES, *r.dead)
        self._reclaim = None
        return resolved

    async def _next_reclaim(self, r: _Reclaim, run: _Pass) -> bool:
        """Move `r` to the next tenant that may hold an open reservation; False when none is
        left, or when the pass's budget ran out first (then `r` is not finished)."""
        upto = run.now + self.settings.cap_ms
        while not r.pending and r.shard < len(r.shards):
            r.scan, r.pending = await self._scan_index(r.shards[r.shard], r.scan, upto)
            if r.scan == 0:
                r.shard += 1
            if not r.pending and not run.budget.left():
                return False
        if not r.pending:
            return False
        r.tenant, r.cursor = r.pending.pop(0), "0"
        return True

    async def _scan_index(self, shard: str, cursor: int, upto: int) -> tuple[int, list[str]]:
        """One ZSCAN step over an index key: the next cursor (0: done) and the tenants it found
        due by `upto` (the module docstring says why ZSCAN)."""
        found, rows = await self._client.zscan(shard, cursor, count=self.reclaim_scan)
        due = [str(t) for t, score in cast(list[tuple[str, float]], rows) if score <= upto]
        return int(found), due
