"""The sweeper on memory:// (sweeping.py says what both stores share): a pass visits the tenants
the due index names (memory_due.py), each isolated, within the pass's time budget; each tenant's
sweep is lua/sweep.lua's, step for step.

A dead owner's reclaim (sweep_redis.py's phase 1) visits every tenant the store held when it
began (one holding a dead owner's call did: the dead reserve nothing), in name order; one whose
pass runs out of time is resumed by the next from the tenant it reached, with those of its dead
still dead, and forgets them once every tenant was visited. As on Redis, a call it cannot charge
(the safe range) stays open until its deadline, when the due part resolves it whoever owns it:
it does not keep its owner listed.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from proxy.core.errors import AmountOutOfRange
from proxy.core.types import ReservationSettings
from proxy.store.ledger import quotas
from proxy.store.ledger.base import AlertLimits, Crossing, ExpiryAlerts, State
from proxy.store.ledger.common import expiry_limits
from proxy.store.ledger.memory_due import DueIndex
from proxy.store.ledger.memory_state import Record, TenantState
from proxy.store.ledger.meta import sorted_amounts
from proxy.store.ledger.sweeping import STUCK_RETRY_MS, SWEEP_BUDGET_S, Budget, SweepErrors


@dataclass(slots=True)
class _Reclaim:
    """A reclaim of dead owners' reservations in progress."""

    dead: tuple[str, ...]
    left: list[str]
    """The tenants still to visit, the next last."""


class MemorySweep(SweepErrors, ABC):
    """Mixed into MemoryLedger, which provides these."""

    settings: ReservationSettings
    owner: str
    expiry_alerts: ExpiryAlerts | None
    usage_events: bool
    _clock: Callable[[], int]
    _dead_after_ms: int
    _tenants: dict[str, TenantState]
    _instances: dict[str, int]
    _due: DueIndex
    sweep_budget_s: float = SWEEP_BUDGET_S
    stuck_retry_ms: int = STUCK_RETRY_MS

    def __init__(self) -> None:
        super().__init__()
        self._reclaim: _Reclaim | None = None

    @abstractmethod
    def _tenant(self, tenant: str) -> TenantState:
        """The tenant's state, created empty."""

    @abstractmethod
    def outbox_add(self, tenant: str, fields: Mapping[str, str]) -> None:
        """Add a usage event to the outbox (outbox.py)."""

    @abstractmethod
    def _finish(self, t: TenantState, rid: str, r: Record, state: State, now: int) -> None:
        """Settle the record: it becomes a tombstone."""

    async def _sweep_tenant(
        self, tenant: str, dead: set[str]
    ) -> tuple[int, AmountOutOfRange | None]:
        """lua/sweep.lua's, step for step: what it resolved, and the first expiry it had to
        leave open (its charge would leave the safe range: nothing written, due again
        `stuck_retry_ms` later) while it went on with the others."""
        alerts = await expiry_limits(self.expiry_alerts, self.settings, tenant)
        t = self._tenant(tenant)
        now = t.now(self._clock())
        resolved, crossed = 0, list[Crossing]()
        stuck: AmountOutOfRange | None = None
        retry: list[str] = []
        try:
            # What is due, from the expiry heap (expiry.py), never a walk of every record.
            while due := t.resv_exp.pop_due(now, 1):
                ((at, rid),) = due
                r = t.resv.get(rid)
                if r is None or r.state != "OPEN":
                    t.resv.pop(rid, None)
                    continue
                try:
                    crossed += self._expire(t, rid, r, now, alerts)
                except AmountOutOfRange as exc:
                    stuck = stuck or exc
                    retry.append(rid)  # nothing was written: it stays OPEN, due again later
                    continue
                except BaseException:
                    t.resv_exp[rid] = at  # nothing was written: it stays OPEN and due
                    raise
                resolved += 1
            # Only when an owner is dead (never in one process on its own): its open calls. A
            # pass with none walks no record (a tenant keeps thousands of tombstones).
            orphans = [(rid, r) for rid, r in t.resv.items() if r.owner in dead] if dead else []
            for rid, r in orphans:
                if r.state == "OPEN":
                    try:
                        crossed += self._expire(t, rid, r, now, alerts)
                    except AmountOutOfRange as exc:
                        stuck = stuck or exc  # it stays OPEN until its deadline
                        continue
                    resolved += 1
            t.drop_expired(now, None)
            t.days.purge(now)
        finally:
            t.flush_roll(now, self.settings)  # the expiry charges written, even on an error
            for rid in retry:
                t.resv_exp[rid] = now + self.stuck_retry_ms
            if crossed and self.expiry_alerts is not None:
                self.expiry_alerts.crossed(tenant, crossed)
        return resolved, stuck

    async def heartbeat(self) -> None:
        self._instances[self.owner] = self._clock()

    async def sweep_all(self) -> int:
        """Reclaim dead owners' reservations (the module docstring), then sweep the tenants the
        due index names; each tenant isolated, until the pass's budget is spent (each phase
        visits one tenant at least); what is left the next pass resumes."""
        now, budget = self._clock(), Budget.of(self.sweep_budget_s)
        cutoff = now - self._dead_after_ms
        stale = (o for o, at in self._instances.items() if at <= cutoff and o != self.owner)
        visited: set[str] = set()
        resolved = await self._reclaim_dead(tuple(sorted(stale)), budget, visited)
        return resolved + await self._sweep_due(now, budget, visited)

    async def _reclaim_dead(self, dead: tuple[str, ...], budget: Budget, visited: set[str]) -> int:
        """Go on with the reclaim in progress, for those of its owners still dead; a new one, of
        every dead owner, when none is (an owner that dies meanwhile waits for the next)."""
        r = self._reclaim
        if r is not None:
            r.dead = tuple(o for o in r.dead if o in dead)  # one alive again is left alone
            if not r.dead:
                r = self._reclaim = None
        if not dead:
            return 0
        if r is None:
            r = self._reclaim = _Reclaim(dead, sorted(self._tenants, reverse=True))
        resolved = 0
        while r.left:
            tenant = r.left.pop()
            visited.add(tenant)
            resolved += await self._visit(tenant, set(r.dead))
            if r.left and not budget.left():
                return resolved  # the dead stay listed: the next pass goes on from here
        for owner in r.dead:
            self._instances.pop(owner, None)
        self._reclaim = None
        return resolved

    async def _sweep_due(self, now: int, budget: Budget, visited: set[str]) -> int:
        """The tenants the due index names, but those the reclaim visited in this pass."""
        tenants = self._due.take(now)
        for tenant in visited.intersection(tenants):  # swept already: back in the index
            self._due.put(tenant, self._tenants[tenant].next_due())
        tenants = [t for t in tenants if t not in visited]
        resolved = 0
        for i, tenant in enumerate(tenants):
            if i and not budget.left():
                for rest in tenants[i:]:
                    self._due.touch(rest)
                return resolved
            resolved += await self._visit(tenant, set())
        return resolved

    async def _visit(self, tenant: str, dead: set[str]) -> int:
        """Sweep one tenant, isolated; index it at its next due time."""
        resolved = 0
        swept = await self.isolated(tenant, self._sweep_tenant(tenant, dead))
        if swept is not None:
            resolved = swept[0]
            self.stuck(tenant, swept[1])
        self._due.put(tenant, self._tenants[tenant].next_due())
        await asyncio.sleep(0)  # calls on this event loop go on between tenants
        return resolved

    def _expire(
        self, t: TenantState, rid: str, r: Record, now: int, alerts: AlertLimits
    ) -> tuple[Crossing, ...]:
        """sweep.lua's expire(); returns the alert thresholds its charge crossed. Raises
        AmountOutOfRange (having written nothing) when the charge would leave the safe range:
        the reservation stays OPEN."""
        charge = r.amounts if self.settings.on_expiry == "charge" else None
        state: State = "EXPIRED_RELEASED" if charge is None else "EXPIRED_CHARGED"
        t.roll.made(r.created, t.day_offset)
        t.settle_lines(r.fields, r.amounts, charge, now, self.settings)
        quotas.free(t.counters, r.held)
        if charge is not None:
            t.mark_expiry(rid, now, self.settings)
        fields = {"reservation": rid, "state": state, "amounts": sorted_amounts(r.amounts)}
        t.append("expire", fields, now, self.settings.audit_retention_ms)
        self._finish(t, rid, r, state, now)
        if self.usage_events:
            charged = "-" if charge is None else sorted_amounts(charge)
            entry = {"kind": "expire", "reservation": rid, "charged": charged}
            self.outbox_add(t.name, entry | {"fields": ",".join(r.fields), "owner": r.owner})
        if charge is None:
            return ()
        marks = [
            (field, bp, mark)
            for field in r.fields
            for level, unit, bp, mark in alerts.marks()
            if field.split("|")[0] == level and field.split("|")[2] == unit
        ]
        return tuple(
            alerts.crossing(field, bp, spent)
            for field, bp, spent in t.cross(marks, charge, now, self.settings)
        )
