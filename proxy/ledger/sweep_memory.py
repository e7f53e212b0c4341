"""The sweeper on memory:// (sweeping.py says what both stores share): a pass visits the tenants
the due index names (memory_due.py), each isolated, within the pass's time budget; each tenant's
sweep is lua/sweep.lua's, step for step.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from proxy.ledger import quotas
from proxy.ledger.base import AlertLimits, Crossing, ExpiryAlerts, State
from proxy.ledger.common import expiry_limits
from proxy.ledger.memory_due import DueIndex
from proxy.ledger.memory_state import Record, TenantState
from proxy.ledger.sweeping import SWEEP_BUDGET_S, Budget, SweepErrors
from proxy.ledger.tenants import sorted_amounts
from proxy.policy.runtime import ReservationSettings


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

    @abstractmethod
    def _tenant(self, tenant: str) -> TenantState:
        """The tenant's state, created empty."""

    @abstractmethod
    def _finish(self, t: TenantState, rid: str, r: Record, state: State, now: int) -> None:
        """Settle the record: it becomes a tombstone."""

    async def sweep(self, tenant: str, dead_owners: Sequence[str] = ()) -> int:
        alerts = await expiry_limits(self.expiry_alerts, self.settings, tenant)
        t, dead = self._tenant(tenant), set(dead_owners)
        now = t.now(self._clock())
        resolved, crossed = 0, list[Crossing]()
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
                except BaseException:
                    t.resv_exp[rid] = at  # nothing was written: it stays OPEN and due
                    raise
                resolved += 1
            # Only when an owner is dead (never in one process on its own): its open calls.
            if dead:
                for rid, r in [(rid, r) for rid, r in t.resv.items() if r.owner in dead]:
                    if r.state == "OPEN":
                        crossed += self._expire(t, rid, r, now, alerts)
                        resolved += 1
            t.drop_expired(now, None)
        finally:
            if crossed and self.expiry_alerts is not None:
                self.expiry_alerts.crossed(tenant, crossed)
        return resolved

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
            resolved += await self.isolated(tenant, self.sweep(tenant, dead)) or 0
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
        the reservation stays OPEN and the sweep stops there."""
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
