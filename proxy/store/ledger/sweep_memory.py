"""The sweeper on memory:// (sweeping.py says what both stores share): a pass visits the tenants
the due index names (memory_due.py), each isolated, within the pass's time budget; each tenant's
sweep is lua/sweep.lua's, step for step.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable

from proxy.core.errors import AmountOutOfRange
from proxy.core.types import ReservationSettings
from proxy.store.ledger import quotas
from proxy.store.ledger.base import AlertLimits, Crossing, ExpiryAlerts, State
from proxy.store.ledger.common import expiry_limits
from proxy.store.ledger.memory_due import DueIndex
from proxy.store.ledger.memory_state import Record, TenantState
from proxy.store.ledger.meta import sorted_amounts
from proxy.store.ledger.sweeping import STUCK_RETRY_MS, SWEEP_BUDGET_S, Budget, SweepErrors


class MemorySweep(SweepErrors, ABC):
    """Mixed into MemoryLedger, which provides these."""

    settings: ReservationSettings
    owner: str
    expiry_alerts: ExpiryAlerts | None
    _clock: Callable[[], int]
    _dead_after_ms: int
    _tenants: dict[str, TenantState]
    _instances: dict[str, int]
    _due: DueIndex
    sweep_budget_s: float = SWEEP_BUDGET_S
    stuck_retry_ms: int = STUCK_RETRY_MS

    @abstractmethod
    def _tenant(self, tenant: str) -> TenantState:
        """The tenant's state, created empty."""

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
            # Only when an owner is dead (never in one process on its own): its open calls.
            for rid, r in [(rid, r) for rid, r in t.resv.items() if r.owner in dead]:
                if r.state == "OPEN":
                    try:
                        crossed += self._expire(t, rid, r, now, alerts)
                    except AmountOutOfRange as exc:
                        stuck = stuck or exc  # it stays OPEN until its deadline
                        continue
                    resolved += 1
            t.drop_expired(now, None)
        finally:
            for rid in retry:
                t.resv_exp[rid] = now + self.stuck_retry_ms
            if crossed and self.expiry_alerts is not None:
                self.expiry_alerts.crossed(tenant, crossed)
        return resolved, stuck

    async def heartbeat(self) -> None:
        self._instances[self.owner] = self._clock()

    async def sweep_all(self) -> int:
        """Sweep the tenants the due index names (every tenant while an owner is dead), each
        isolated, until the pass's budget is spent; the rest stay due for the next pass."""
        now, budget = self._clock(), Budget.of(self.sweep_budget_s)
        cutoff = now - self._dead_after_ms
        dead = [o for o, at in self._instances.items() if at <= cutoff and o != self.owner]
        tenants = self._due.take(now)
        if dead:
            tenants = sorted({*tenants, *self._tenants})
        resolved = 0
        for i, tenant in enumerate(tenants):
            if i and not budget.left():
                for rest in tenants[i:]:
                    self._due.touch(rest)
                return resolved  # the dead stay listed: the next pass goes on reclaiming
            swept = await self.isolated(tenant, self._sweep_tenant(tenant, set(dead)))
            if swept is not None:
                resolved += swept[0]
                self.stuck(tenant, swept[1])
            self._due.put(tenant, self._tenants[tenant].next_due())
            await asyncio.sleep(0)  # calls on this event loop go on between tenants
        for owner in dead:
            del self._instances[owner]
        return resolved

    def _expire(
        self, t: TenantState, rid: str, r: Record, now: int, alerts: AlertLimits
    ) -> tuple[Crossing, ...]:
        """sweep.lua's expire(); returns the alert thresholds its charge crossed. Raises
        AmountOutOfRange (having written nothing) when the charge would leave the safe range:
        the reservation stays OPEN."""
        charge = r.amounts if self.settings.on_expiry == "charge" else None
        state: State = "EXPIRED_RELEASED" if charge is None else "EXPIRED_CHARGED"
        t.settle_lines(r.fields, r.amounts, charge, now, self.settings)
        quotas.free(t.counters, r.held)
        if charge is not None:
            t.mark_expiry(rid, now, self.settings)
        fields = {"reservation": rid, "state": state, "amounts": sorted_amounts(r.amounts)}
        t.append("expire", fields, now, self.settings.audit_retention_ms)
        self._finish(t, rid, r, state, now)
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
