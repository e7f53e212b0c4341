"""The in-process ledger (`memory://`): one process only, same semantics as the Redis store.

Each method runs to completion without awaiting, so on one event loop it is as atomic as a
script. The structures mirror the Redis keys (a hash of integer fields per tenant, the expiry
sets, the reservation records) and each step below mirrors the matching step in lua/*.lua, so
that the one contract suite holds for both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from proxy.ledger import quotas
from proxy.ledger.base import (
    Amounts,
    BalanceRow,
    BudgetLine,
    Reservation,
    ReserveRequest,
    ReserveResult,
    SettleResult,
    State,
    TenantStatus,
)
from proxy.ledger.checks import check_amounts, check_owner, check_request, check_reservation
from proxy.ledger.choose import choose
from proxy.ledger.common import (
    DENIED,
    Outcome,
    balance_rows,
    field_expiry,
    instance_id,
    period_id,
    reserve_result,
    wall_clock_ms,
)
from proxy.policy.runtime import ReservationSettings


@dataclass(slots=True)
class _Record:
    state: State
    owner: str
    outcome: Outcome
    amounts: dict[str, int]
    fields: tuple[str, ...]
    held: tuple[str, ...] = ()
    actual: dict[str, int] | None = None


@dataclass(slots=True)
class _Tenant:
    ledger: dict[str, int] = field(default_factory=dict)
    ledger_exp: dict[str, int] = field(default_factory=dict)
    resv: dict[str, _Record] = field(default_factory=dict)
    resv_exp: dict[str, int] = field(default_factory=dict)
    status: TenantStatus = "active"
    counters: quotas.Counters = field(init=False)

    def __post_init__(self) -> None:
        self.counters = quotas.Counters(self.ledger_exp)


@dataclass(slots=True)
class _Line:
    line: BudgetLine
    pid: str
    prefix: str
    remaining: int


class MemoryLedger:
    """`Ledger` in this process. `clock` returns the time in milliseconds (tests move it)."""

    def __init__(
        self,
        settings: ReservationSettings,
        owner: str | None = None,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        heartbeat_interval_s: float = 5.0,
    ) -> None:
        self.owner = check_owner(owner or instance_id())
        self.settings = settings
        self._clock = clock
        self._dead_after_ms = int(3 * heartbeat_interval_s * 1000)
        self._tenants: dict[str, _Tenant] = {}
        self._instances: dict[str, int] = {}

    def _tenant(self, tenant: str) -> _Tenant:
        return self._tenants.setdefault(tenant, _Tenant())

    def _read_line(self, t: _Tenant, line: BudgetLine, now: int) -> _Line:
        pid = period_id(line.period, now)
        prefix = f"{line.level}|{line.value}|{line.unit}|{pid}"
        used = sum(t.ledger.get(f"{prefix}|{k}", 0) for k in ("spent", "reserved"))
        remaining = line.limit + t.ledger.get(f"{prefix}|credit", 0) - used
        return _Line(line, pid, prefix, remaining)

    async def reserve(self, request: ReserveRequest) -> ReserveResult:
        check_request(request)
        now, t = self._clock(), self._tenant(request.tenant)
        self._drop_expired(t, now, 8)
        lines = [self._read_line(t, line, now) for line in request.lines]
        existing = t.resv.get(request.reservation_id)
        if existing is not None:
            return _result(request, t.status, existing, lines)
        if t.status != "active":
            return _result(request, t.status, None, lines)
        choice = choose(request.candidates, [(ln.line.unit, ln.remaining) for ln in lines])
        outcome, gate = quotas.decide(t.counters, request, choice, now)
        if outcome.candidate < 0:
            return _result(request, t.status, None, lines, outcome)
        quotas.count(t.counters, gate, now, self.settings)
        amounts = dict(request.candidates[0].amounts) if request.shadow else choice.amounts
        prefixes = tuple(ln.prefix for ln in lines)
        record = _Record("OPEN", self.owner, outcome, amounts, prefixes, gate.held)
        self._hold(t, request.reservation_id, record, lines, now)
        return _result(request, t.status, record, lines)

    def _hold(
        self, t: _Tenant, rid: str, record: _Record, lines: Sequence[_Line], now: int
    ) -> None:
        """Reserve the record's amounts on every line and keep it OPEN until its deadline."""
        for ln in lines:
            amount = record.amounts.get(ln.line.unit, 0)
            self._add(t, f"{ln.prefix}|reserved", amount)
            self._touch(t, ln.prefix, now)
            ln.remaining -= amount
        t.resv[rid] = record
        t.resv_exp[rid] = now + self.settings.cap_ms

    async def commit(self, reservation: Reservation, actual: Amounts) -> SettleResult:
        check_reservation(reservation)
        check_amounts("actual", actual)
        now, t = self._clock(), self._tenant(reservation.tenant)
        r = t.resv.get(reservation.id) or self._missing(reservation)
        if r.state == "COMMITTED":
            return SettleResult("COMMITTED", False, dict(r.actual or {}))
        charged = dict(actual)
        if r.state in ("OPEN", "MISSING"):
            self._settle_lines(t, r.fields, r.amounts, actual, now)
            quotas.free(t.counters, r.held)
        elif r.state == "EXPIRED_CHARGED":
            charged = {u: actual.get(u, 0) - r.amounts.get(u, 0) for u in {*actual, *r.amounts}}
            self._settle_lines(t, r.fields, None, charged, now)
        else:  # RELEASED, EXPIRED_RELEASED: nothing is reserved any more; never under-record.
            self._settle_lines(t, r.fields, None, actual, now)
        self._finish(t, reservation.id, r, "COMMITTED", now, dict(actual))
        return SettleResult("COMMITTED", True, charged)

    async def release(self, reservation: Reservation) -> SettleResult:
        check_reservation(reservation)
        now, t = self._clock(), self._tenant(reservation.tenant)
        r = t.resv.get(reservation.id) or self._missing(reservation)
        if r.state not in ("OPEN", "MISSING"):
            return SettleResult(r.state, False, {})
        self._settle_lines(t, r.fields, r.amounts, None, now)
        quotas.free(t.counters, r.held)
        self._finish(t, reservation.id, r, "RELEASED", now)
        return SettleResult("RELEASED", True, {})

    async def balances(self, tenant: str) -> list[BalanceRow]:
        return balance_rows(self._tenant(tenant).ledger)

    async def counters(self, tenant: str) -> dict[str, int | str]:
        return self._tenant(tenant).counters.snapshot()

    async def set_status(self, tenant: str, status: TenantStatus) -> None:
        self._tenant(tenant).status = status

    async def sweep(self, tenant: str, dead_owners: Sequence[str] = ()) -> int:
        now, t, dead = self._clock(), self._tenant(tenant), set(dead_owners)
        resolved = 0
        for rid, at in sorted(t.resv_exp.items(), key=lambda item: (item[1], item[0])):
            r = t.resv.get(rid)
            is_open = r is not None and r.state == "OPEN"
            if r is not None and is_open and (at <= now or r.owner in dead):
                self._expire(t, rid, r, now)
                resolved += 1
            elif at <= now:
                t.resv.pop(rid, None)
                del t.resv_exp[rid]
        self._drop_expired(t, now, None)
        return resolved

    async def heartbeat(self) -> None:
        self._instances[self.owner] = self._clock()

    async def sweep_all(self) -> int:
        cutoff = self._clock() - self._dead_after_ms
        dead = [o for o, at in self._instances.items() if at <= cutoff and o != self.owner]
        resolved = 0
        for tenant in sorted(self._tenants):
            resolved += await self.sweep(tenant, dead)
        for owner in dead:
            del self._instances[owner]
        return resolved

    async def close(self) -> None:
        """Nothing to release: the state lives and dies with the process."""

    def _missing(self, reservation: Reservation) -> _Record:
        """Stand-in for a record the store no longer has: settle from what the caller holds."""
        return _Record(
            "MISSING",
            self.owner,
            Outcome(0, True),
            dict(reservation.amounts),
            reservation.fields,
            reservation.held,
        )

    def _expire(self, t: _Tenant, rid: str, r: _Record, now: int) -> None:
        charge = r.amounts if self.settings.on_expiry == "charge" else None
        self._settle_lines(t, r.fields, r.amounts, charge, now)
        quotas.free(t.counters, r.held)
        self._finish(t, rid, r, "EXPIRED_RELEASED" if charge is None else "EXPIRED_CHARGED", now)

    def _finish(
        self,
        t: _Tenant,
        rid: str,
        r: _Record,
        state: State,
        now: int,
        actual: dict[str, int] | None = None,
    ) -> None:
        r.state, r.actual = state, actual
        t.resv[rid] = r
        t.resv_exp[rid] = now + self.settings.tombstone_ms

    def _settle_lines(
        self,
        t: _Tenant,
        fields: Sequence[str],
        free: Amounts | None,
        charge: Amounts | None,
        now: int,
    ) -> None:
        for prefix in fields:
            unit = prefix.split("|")[2]
            if free is not None:
                key = f"{prefix}|reserved"
                self._add(t, key, -free.get(unit, 0))
                t.ledger[key] = max(t.ledger[key], 0)
            if charge is not None:
                self._add(t, f"{prefix}|spent", charge.get(unit, 0))
            self._touch(t, prefix, now)

    @staticmethod
    def _add(t: _Tenant, key: str, amount: int) -> None:
        t.ledger[key] = t.ledger.get(key, 0) + amount

    def _touch(self, t: _Tenant, prefix: str, now: int) -> None:
        s = self.settings
        at = field_expiry(prefix, now, s.run_idle_ms, s.period_grace_ms)
        if at is not None:
            t.ledger_exp[prefix] = max(at, t.ledger_exp.get(prefix, at))

    @staticmethod
    def _drop_expired(t: _Tenant, now: int, limit: int | None) -> None:
        """Drop expired entries: a budget prefix's three fields, or one quota field."""
        due = sorted((at, p) for p, at in t.ledger_exp.items() if at <= now)[:limit]
        for _, name in due:
            if name.startswith("q|"):
                t.counters.drop(name)
            else:
                for kind in ("spent", "reserved", "credit"):
                    t.ledger.pop(f"{name}|{kind}", None)
            del t.ledger_exp[name]


def _result(
    request: ReserveRequest,
    status: TenantStatus,
    record: _Record | None,
    lines: Sequence[_Line],
    outcome: Outcome = DENIED,
) -> ReserveResult:
    """The result for a record (reserved now or before), or for `outcome` without one."""
    pairs = [(ln.pid, ln.remaining) for ln in lines]
    if record is None:
        return reserve_result(request, status, outcome, {}, pairs, ())
    return reserve_result(
        request, status, record.outcome, record.amounts, pairs, record.fields, record.held
    )
