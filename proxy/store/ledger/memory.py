"""The in-process ledger (`memory://`): one process only, same semantics as the Redis store.

Each method runs to completion without awaiting, so on one event loop it is as atomic as a
script. The structures mirror the Redis keys (memory_state.py) and each step below mirrors the
matching step in lua/*.lua, so that the one contract suite holds for both. Tenant records and
the audit trail are the tenant store's (store/tenants/memory.py), on this ledger's `state`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace

from proxy.core.types import END_USER, ReservationSettings
from proxy.store.ledger import quotas, spenders
from proxy.store.ledger.base import (
    Amounts,
    BalanceRow,
    BudgetLine,
    Crossing,
    DayRollup,
    ExpiryAlerts,
    LineBalance,
    Reservation,
    ReservationRecord,
    ReserveRequest,
    ReserveResult,
    SettleResult,
    State,
)
from proxy.store.ledger.calendar import Calendar
from proxy.store.ledger.checks import check_amounts, check_owner, check_request, check_reservation
from proxy.store.ledger.choose import Choice, choose
from proxy.store.ledger.common import (
    DENIED,
    Outcome,
    alert_marks,
    balance_row,
    balance_rows,
    instance_id,
    limit_in_force,
    reserve_result,
    wall_clock_ms,
)
from proxy.store.ledger.memory_lines import Line, limited, result, why
from proxy.store.ledger.memory_state import TOMBSTONES_MAX, MemoryState, Record, TenantState
from proxy.store.ledger.meta import calendar_at, decode_overrides, sorted_amounts
from proxy.store.ledger.outbox import MemoryOutbox, event_id
from proxy.store.ledger.rollups import TENANT_ROW, row_of
from proxy.store.ledger.rollups_memory import roll_denial, roll_reserved
from proxy.store.ledger.sweep_memory import MemorySweep


class MemoryLedger(MemoryOutbox, MemorySweep):
    """`Ledger` in this process. `clock` returns the time in milliseconds (tests move it). The
    sweeper is in sweep_memory.py. Its `state` is what a tenant store on it
    (store/tenants/memory.py) works on."""

    def __init__(
        self,
        settings: ReservationSettings,
        owner: str | None = None,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        heartbeat_interval_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.owner = check_owner(owner or instance_id())
        self.settings = settings
        self.state = MemoryState(settings, clock)
        self._clock = clock
        self._dead_after_ms = int(3 * heartbeat_interval_s * 1000)
        self._tenants = self.state.tenants
        self._instances: dict[str, int] = {}
        self._settled: deque[tuple[TenantState, str]] = deque()
        self._due = self.state.due
        self.expiry_alerts: ExpiryAlerts | None = None

    async def connect(
        self, *, require_noeviction: bool = False, user_ids: str | None = None
    ) -> None:
        """Nothing to check: this store lives and dies with the process (no replica shares
        it, so no other secret can hash its end users' ids)."""

    def _tenant(self, tenant: str) -> TenantState:
        """The tenant's state (created empty); the next sweep looks at it (memory_due.py)."""
        return self.state.tenant(tenant)

    def _read_line(
        self, t: TenantState, line: BudgetLine, now: int, cal: Calendar, overrides: dict[str, int]
    ) -> Line:
        pid = cal.period_id(line.period, now)
        prefix = f"{line.level}|{line.value}|{line.unit}|{pid}"
        book = t.ledger.book(prefix)
        spent = book.get(prefix + "|spent", 0)
        used = spent + book.get(prefix + "|reserved", 0)
        limit = limit_in_force(line, overrides)
        remaining = limit + book.get(prefix + "|credit", 0) - used
        return Line(line, pid, prefix, remaining, limit, spent)

    async def reserve(self, request: ReserveRequest) -> ReserveResult:
        check_request(request)
        t = self._tenant(request.tenant)
        now = t.now(self._clock())
        t.roll.clear()
        answer = self._reserve(t, request, now)
        t.flush_roll(now, self.settings)
        return answer

    def _reserve(self, t: TenantState, request: ReserveRequest, now: int) -> ReserveResult:
        cal = calendar_at(t.meta, now, request.utc_offset_min)
        t.drop_expired(now, 8)
        overrides = decode_overrides(t.meta.get("overrides", "-"))
        lines = [self._read_line(t, line, now, cal, overrides) for line in request.lines]
        existing = t.resv.get(request.reservation_id)
        if existing is not None:
            return result(request, t.status, existing, lines)
        if request.version is not None and str(request.version) != t.meta.get("version", "0"):
            pairs = [(ln.pid, ln.remaining) for ln in lines]
            return reserve_result(request, t.status, DENIED, {}, pairs, (), stale=True)
        if request.utc_offset_min != t.day_offset:  # the settles' day (reserve.lua)
            t.meta["day_offset_min"] = str(request.utc_offset_min)
        if t.status != "active":
            reason = f"tenant_{t.status}"
            self._deny(t, request, reason, "-", now)
            t.roll.add(f"{TENANT_ROW}|deny|{reason}", 1)
            return result(request, t.status, None, lines)
        choice = choose(request.candidates, [(ln.line.unit, ln.remaining) for ln in lines])
        outcome, gate = quotas.decide(t.counters, request, choice, now, cal)
        if outcome.candidate < 0:
            self._deny(t, request, *why(outcome, lines), now)
            roll_denial(t.roll, outcome.quota, limited(outcome, lines), "deny")
            first = None
            if outcome.quota is None and outcome.denied_by is not None:
                prefix = lines[outcome.denied_by].prefix
                first = prefix if t.first_deny(prefix, now, self.settings) else None
            return result(request, t.status, None, lines, outcome, first)
        amounts = dict(request.candidates[0].amounts) if request.shadow else choice.amounts
        prefixes = tuple([ln.prefix for ln in lines])
        t.check_range(prefixes, "reserved", amounts)
        ttl = self.settings.cap_ms if request.ttl_ms is None else request.ttl_ms
        hold = min(ttl, self.settings.cap_ms)
        quotas.count(t.counters, gate, now, self.settings, hold)
        record = Record("OPEN", self.owner, outcome, amounts, prefixes, gate.held)
        self._allow(t, request, choice, record, why(outcome, lines), now)
        record.deadline, record.created = now + hold, now
        record.scope = request.scope if request.keep_scope else None
        rule = None if request.shadow or not choice.index else request.candidates[choice.index].name
        self._hold(t, request.reservation_id, record, lines, now, cal, rule)
        t.roll.add(f"{TENANT_ROW}|calls", 1)
        if request.shadow and not request.replay and not outcome.would_allow:
            roll_denial(t.roll, outcome.quota, limited(outcome, lines), "shadow")
        return result(request, t.status, record, lines)

    def _fields(self, request: ReserveRequest, decision: str, amounts: Amounts) -> dict[str, str]:
        fields = {
            "decision": decision,
            "reservation": request.reservation_id,
            "path": request.scope,
            "amounts": sorted_amounts(amounts),
        }
        if request.run is not None:
            fields["run"] = request.run
        if request.action is not None:
            fields["action"] = request.action
        return fields

    def _deny(
        self, t: TenantState, request: ReserveRequest, reason: str, scope: str, now: int
    ) -> None:
        fields = self._fields(request, "DENY", request.candidates[0].amounts)
        fields |= {"reason": reason, "scope": scope}
        group = request.group or request.action or ""
        t.deny(reason, scope, fields, group, now, self.settings.audit_retention_ms)

    def _allow(
        self,
        t: TenantState,
        request: ReserveRequest,
        choice: Choice,
        record: Record,
        why: tuple[str, str],
        now: int,
    ) -> None:
        capped = choice.index is not None and choice.index > 0
        verdict = "ALLOW_WITH_CAPS" if capped else "ALLOW"
        fields = self._fields(request, "ALLOW" if request.shadow else verdict, record.amounts)
        if capped:
            fields["rule"] = request.candidates[record.outcome.candidate].name
        if request.shadow and not request.replay:
            fields["would"] = verdict if record.outcome.would_allow else "DENY"
            if not record.outcome.would_allow:
                fields |= {"reason": why[0], "scope": why[1]}
        t.append("reserve", fields, now, self.settings.audit_retention_ms)

    def _hold(
        self,
        t: TenantState,
        rid: str,
        record: Record,
        lines: Sequence[Line],
        now: int,
        cal: Calendar,
        rule: str | None,
    ) -> None:
        """Reserve the record's amounts on every line and keep it OPEN until its deadline; into
        the day's rollups, with the degrade `rule` that shaped it."""
        for ln in lines:
            amount = record.amounts.get(ln.line.unit, 0)
            book, key = t.ledger.book(ln.prefix), ln.prefix + "|reserved"
            book[key] = book.get(key, 0) + amount
            roll_reserved(t.roll, ln.prefix, ln.limit, amount, book[key], ln.spent, rule)
            t.touch(ln.prefix, now, self.settings, cal, record.deadline - now)
            ln.remaining -= amount
        t.resv[rid] = record
        t.resv_exp[rid] = record.deadline

    async def commit(
        self,
        reservation: Reservation,
        actual: Amounts,
        *,
        final_release: bool = False,
        known_only: bool = False,
        event: str | None = None,
    ) -> SettleResult:
        """commit.lua's states, step for step (its header says what each does)."""
        check_reservation(reservation)
        check_amounts("actual", actual)
        t = self._tenant(reservation.tenant)
        now, s = t.now(self._clock()), self.settings
        r = t.resv.get(reservation.id)
        if r is None and known_only:
            return SettleResult("MISSING", False, {})
        r = r or self._missing(reservation)
        if r.state == "COMMITTED":
            return SettleResult("COMMITTED", False, dict(r.actual or {}))
        if r.state in ("RELEASED", "EXPIRED_RELEASED") and final_release:
            return SettleResult(r.state, False, {})
        charged = dict(actual)
        per_line: dict[str, int] = charged
        t.roll.made(r.created, t.day_offset)
        if r.state == "OPEN":
            t.settle_lines(r.fields, r.amounts, actual, now, s)
            quotas.free(t.counters, r.held)
        elif r.state == "EXPIRED_CHARGED":
            added, charged = t.late_charge(reservation.id, r.fields, r.amounts, actual, now, s)
            per_line = {**charged, **added}
        else:  # MISSING, RELEASED, EXPIRED_RELEASED: nothing is reserved or held any more.
            t.settle_lines(r.fields, None, actual, now, s)
        for prefix in r.fields:
            t.roll.add(f"{row_of(prefix)}|csum", actual.get(prefix.split("|")[2], 0))
        crossed = _crossed(t, reservation, per_line, now, s)
        fields = {"reservation": reservation.id, "from": r.state, "state": "COMMITTED"}
        fields |= {"actual": sorted_amounts(actual), "charged": sorted_amounts(charged)}
        t.append("commit", fields, now, s.audit_retention_ms)
        eid = event_id(reservation.id, r.state, now)
        self._finish(t, reservation.id, r, "COMMITTED", now, dict(actual))
        self._settled_event(reservation, event, eid, "COMMITTED", sorted_amounts(charged))
        t.flush_roll(now, s)
        return SettleResult("COMMITTED", True, charged, crossed)

    async def release(
        self, reservation: Reservation, *, known_only: bool = False, event: str | None = None
    ) -> SettleResult:
        """release.lua's: an OPEN record is freed; one the store lacks frees nothing and leaves
        a tombstone (with `known_only`, nothing)."""
        check_reservation(reservation)
        t = self._tenant(reservation.tenant)
        now = t.now(self._clock())
        r = t.resv.get(reservation.id)
        if r is None and known_only:
            return SettleResult("MISSING", False, {})
        if r is None:
            r = self._missing(reservation)
        elif r.state != "OPEN":
            return SettleResult(r.state, False, {})
        else:
            t.settle_lines(r.fields, r.amounts, None, now, self.settings)
            quotas.free(t.counters, r.held)
        fields = {"reservation": reservation.id, "state": "RELEASED"}
        t.append("release", fields, now, self.settings.audit_retention_ms)
        eid = event_id(reservation.id, r.state, now)
        self._finish(t, reservation.id, r, "RELEASED", now)
        self._settled_event(reservation, event, eid, "RELEASED", "-")
        return SettleResult("RELEASED", True, {})

    def _settled_event(
        self, reservation: Reservation, event: str | None, eid: str, state: str, charged: str
    ) -> None:
        """lua/outbox.lua's entry for a settle that changed the ledger: its event id, the state
        after it and what it charged."""
        if event is not None:
            fields = {"kind": "settle", "state": state, "event": event, "id": eid}
            fields |= {"reservation": reservation.id, "charged": charged}
            self.outbox_add(reservation.tenant, fields)

    async def balances(self, tenant: str) -> list[BalanceRow]:
        return balance_rows(self._tenant(tenant).ledger.own)

    async def top_spenders(
        self, tenant: str, level: str, unit: str, period_id: str, limit: int
    ) -> list[BalanceRow]:
        t = self._tenants.get(tenant) or TenantState()  # a read creates nothing
        best = spenders.Best(limit)
        lines = t.ledger.users if level == END_USER else t.ledger.own
        best.add((k, v) for k, v in lines.items() if spenders.matches(k, level, unit, period_id))
        return [
            balance_row(p, spent, t.ledger.get(f"{p}|reserved", 0), t.ledger.get(f"{p}|credit", 0))
            for p, spent in best.prefixes()
        ]

    async def lines(
        self, tenant: str, lines: Sequence[BudgetLine], utc_offset_min: int = 0
    ) -> list[LineBalance]:
        t = self._tenants.get(tenant) or TenantState()  # a read creates nothing
        now = t.now(self._clock())
        cal = calendar_at(t.meta, now, utc_offset_min)
        overrides = decode_overrides(t.meta.get("overrides", "-"))
        out = []
        for line in lines:
            read = self._read_line(t, line, now, cal, overrides)
            kept = replace(line, limit=limit_in_force(line, overrides))
            sums = [t.ledger.get(f"{read.prefix}|{k}", 0) for k in ("spent", "reserved", "credit")]
            out.append(LineBalance(kept, read.pid, *sums))
        return out

    async def reservation(self, tenant: str, reservation_id: str) -> ReservationRecord | None:
        t = self._tenants.get(tenant)
        r = None if t is None else t.resv.get(reservation_id)
        if r is None:
            return None
        actual = None if r.actual is None else dict(r.actual)
        return ReservationRecord(
            reservation_id, r.state, r.deadline, dict(r.amounts), r.fields, r.held, actual, r.scope
        )

    async def rollups(self, tenant: str, since: str, until: str | None = None) -> list[DayRollup]:
        t = self._tenants.get(tenant) or TenantState()  # a read creates nothing
        retention = self.settings.history_retention_ms
        return t.days.read(since, until, t.now(self._clock()), t.day_offset, retention)

    def on_epoch_lost(self, hook: Callable[[str | None, str | None], None]) -> None:
        """Never called: this store lives and dies with the process, so it cannot be lost."""

    async def close(self) -> None:
        """Nothing to release: the state lives and dies with the process."""

    def _missing(self, reservation: Reservation) -> Record:
        """Stand-in for a record the store no longer has, from what the caller holds: only its
        tombstone is written from it. It holds no concurrency: what the reservation reserved
        and held was settled at its expiry or lost with the store (common.lua missing_record)."""
        return Record(
            "MISSING", self.owner, Outcome(0, True), dict(reservation.amounts), reservation.fields
        )

    def _finish(
        self,
        t: TenantState,
        rid: str,
        r: Record,
        state: State,
        now: int,
        actual: dict[str, int] | None = None,
    ) -> None:
        r.state, r.actual = state, actual
        t.resv[rid] = r
        t.resv_exp[rid] = now + self.settings.tombstone_ms
        self._settled.append((t, rid))
        # The newest TOMBSTONES_MAX settled records of the store are kept (each is about 1 KiB
        # of the proxy's own memory); an older one that is settled again is charged as a record
        # the store lost (never less than the report).
        while len(self._settled) > TOMBSTONES_MAX:
            owner, old = self._settled.popleft()
            record = owner.resv.get(old)
            if record is not None and record.state != "OPEN":
                del owner.resv[old]
                owner.resv_exp.discard(old)


def _crossed(
    t: TenantState, reservation: Reservation, charged: Amounts, now: int, s: ReservationSettings
) -> tuple[Crossing, ...]:
    """The alert thresholds this commit's charge crossed (none asked: nothing to look at)."""
    marks = alert_marks(reservation)
    if not marks:
        return ()
    limits = dict(zip(reservation.fields, reservation.limits, strict=False))
    return tuple(
        Crossing(field, bp, limits.get(field, 0), spent)
        for field, bp, spent in t.cross(marks, charged, now, s)
    )
