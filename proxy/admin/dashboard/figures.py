"""The dashboard's numbers, read from the store (never from one process's metrics, which see
only that replica's calls).

- Spend against budget: the ledger. `Ledger.lines` gives a tenant-level line in the period
  current now (the tenant's time zone and anchor, as a reserve would use) with the limit in
  force (overrides applied); `Ledger.balances` gives every line the tenant has but its end
  users', as the admin API's /balances does, and the top end users are read as its /users
  reads them (admin/user_routes.py). Amounts stay integers in their unit until they are
  formatted.
- Denials, degradations and spend per day: the audit trail (scan.py), bounded.
- Day and month series: the ledger's own period lines where it still has them (`d…` and `m…`
  lines of a tenant-level budget, kept until their period ends plus the grace), else the sums of
  what commits and expiries charged in the trail, marked partial or unknown where the trail does
  not reach (retention, or the scan's budget).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from proxy.admin.dashboard.scan import DayCounts, History, Scan, history, today
from proxy.admin.user_routes import top_users
from proxy.core.types import is_action_unit
from proxy.policy.runtime import LEVELS, Budget, Plan, Policy
from proxy.store.ledger.base import BalanceRow, BudgetLine, Ledger, LineBalance
from proxy.store.ledger.calendar import DAY_MS, Anchor, period_end_ms, period_id, utc_ms
from proxy.store.open import Stores
from proxy.store.tenants import TenantRecord
from proxy.store.tenants.records import utc_offset_min

DAYS = 31
TOP_USERS = 10
"""End users shown on a tenant's page, per end-user budget."""
MONTHS = 3
CONCURRENCY = 8
Source = Literal["ledger", "audit", "partial", "unknown"]


def parse_pid(pid: str) -> date:
    return date(int(pid[1:5]), int(pid[5:7]), int(pid[7:9]))


@dataclass(frozen=True, slots=True)
class Clock:
    """The tenant's calendar now, as the ledger computes it."""

    offset_min: int
    day: str
    """The current day period, `d20261123`."""
    month: str
    """The current month period under the tenant's anchor, `m20261115`."""

    @property
    def today(self) -> date:
        return parse_pid(self.day)

    @property
    def day_start_ms(self) -> int:
        return utc_ms(self.today, self.offset_min)


@dataclass(frozen=True, slots=True)
class Standing:
    """A budget line in one period and the limit it is held to (None: no budget in the plan)."""

    level: str
    value: str
    unit: str
    period_id: str
    limit: int | None
    spent: int
    reserved: int
    credit: int
    current: bool = True

    @property
    def remaining(self) -> int | None:
        if self.limit is None:
            return None
        return self.limit + self.credit - self.spent - self.reserved

    @property
    def used(self) -> float:
        """Spent and reserved as a fraction of what the line may use (limit and credit)."""
        room = (self.limit or 0) + self.credit
        return (self.spent + self.reserved) / room if room > 0 else 0.0


def _tenant_budgets(plan: Plan | None) -> list[Budget]:
    if plan is None:
        return []
    return [b for b in (*plan.budgets, *plan.action_budgets) if b.level == "tenant"]


async def _read(
    ledger: Ledger, record: TenantRecord, budgets: Sequence[Budget]
) -> tuple[Clock, list[LineBalance]]:
    """The tenant's budgets in their current periods, and its clock, in one read."""
    offset = utc_offset_min(record.timezone)
    lines = [BudgetLine("tenant", record.id, b.unit, b.period, b.limit) for b in budgets]
    probes = [BudgetLine("tenant", record.id, "USD", p, 0) for p in ("day", "month")]
    got = await ledger.lines(record.id, [*lines, *probes], offset)
    return Clock(offset, got[-2].period_id, got[-1].period_id), got[:-2]


@dataclass(frozen=True, slots=True)
class TenantRow:
    record: TenantRecord
    lines: tuple[Standing, ...]
    """Tenant-level budgets in their current period: call budgets, then action budgets."""
    today: DayCounts


async def tenant_row(stores: Stores, policy: Policy, record: TenantRecord) -> TenantRow:
    budgets = _tenant_budgets(policy.plans.get(record.plan))
    clock, lines = await _read(stores.ledger, record, budgets)
    standings = tuple(
        Standing(
            "tenant",
            record.id,
            b.line.unit,
            b.period_id,
            b.line.limit,
            b.spent,
            b.reserved,
            b.credit,
        )
        for b in lines
    )
    counts = await today(stores.tenants, record.id, clock.day_start_ms)
    return TenantRow(record, standings, counts)


async def tenant_rows(
    stores: Stores, policy: Policy, records: Iterable[TenantRecord]
) -> list[TenantRow]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(record: TenantRecord) -> TenantRow:
        async with gate:
            return await tenant_row(stores, policy, record)

    return list(await asyncio.gather(*(one(r) for r in records)))


@dataclass(frozen=True, slots=True)
class Point:
    label: str
    amount: int | None
    """None: the trail does not reach this far back and the ledger no longer has it."""
    source: Source


@dataclass(frozen=True, slots=True)
class Series:
    unit: str
    days: tuple[Point, ...]
    months: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class TenantView:
    record: TenantRecord
    plan: Plan | None
    clock: Clock
    lines: tuple[Standing, ...]
    """Every line the ledger has for the tenant but its end users', in scope order."""
    history: History
    series: tuple[Series, ...]
    users: tuple[Standing, ...] = ()
    """The end users who spent most in the current period of each end-user budget."""


def _order(s: Standing) -> tuple[int, int, str, str, str]:
    level = LEVELS.index(s.level) if s.level in LEVELS else len(LEVELS)
    return (is_action_unit(s.unit), level, s.value, s.unit, _desc(s.period_id))


def _desc(pid: str) -> str:
    """Sorts the newest period first."""
    return "".join(chr(0x10FFFF - ord(c)) for c in pid)


def standing(row: BalanceRow, record: TenantRecord, plan: Plan | None, clock: Clock) -> Standing:
    budget = plan.budget_of(row.level, row.unit) if plan is not None else None
    limit = budget.limit_with(record.overrides) if budget is not None else None
    current = row.period_id in (clock.day, clock.month, "-")
    return Standing(
        row.level,
        row.value,
        row.unit,
        row.period_id,
        limit,
        row.spent,
        row.reserved,
        row.credit,
        current,
    )


def month_periods(clock: Clock, anchor_day: int, count: int = MONTHS) -> list[str]:
    """The current month period and the ones before it, oldest first."""
    pids = [clock.month]
    while len(pids) < count:
        start = utc_ms(parse_pid(pids[-1]), clock.offset_min)
        pids.append(period_id("month", start - 1, clock.offset_min, Anchor(anchor_day)))
    return pids[::-1]


async def tenant_view(
    stores: Stores, policy: Policy, record: TenantRecord, now_ms: int
) -> TenantView:
    plan = policy.plans.get(record.plan)
    clock, current = await _read(stores.ledger, record, _tenant_budgets(plan))
    rows = await stores.ledger.balances(record.id)  # never the end users (base.py)
    lines = [standing(r, record, plan, clock) for r in rows]
    # A tenant-level budget not used yet this period has no ledger entry: show it at zero.
    have = {(s.unit, s.period_id) for s in lines if s.level == "tenant"}
    lines += [
        Standing("tenant", record.id, c.line.unit, c.period_id, c.line.limit, 0, 0, 0)
        for c in current
        if (c.line.unit, c.period_id) not in have
    ]
    lines.sort(key=_order)
    months = month_periods(clock, record.anchor_day)
    first_day = clock.today - timedelta(days=DAYS - 1)
    oldest = min(
        utc_ms(first_day, clock.offset_min), utc_ms(parse_pid(months[0]), clock.offset_min)
    )
    floor = max(now_ms - policy.reservations.audit_retention_ms, oldest)
    scan = Scan(stores.tenants, record.id, now_ms=now_ms, floor_ms=floor)
    found = await history(scan, clock.offset_min)
    units = _units(plan, found)
    known = _Known(found, record, rows, clock)
    series = tuple(
        Series(u, known.days(u, first_day), known.months(u, months, record.anchor_day))
        for u in units
    )
    top = await top_users(stores.ledger, record, plan, TOP_USERS)
    users = tuple(standing(r, record, plan, clock) for r in top)
    return TenantView(record, plan, clock, tuple(lines), found, series, users)


def _units(plan: Plan | None, found: History) -> list[str]:
    if plan is not None:
        budgets = (*plan.budgets, *plan.action_budgets)
        return list(dict.fromkeys(b.unit for b in budgets))
    return sorted({unit for unit, _ in found.daily})


class _Known:
    """Where each day's and month's figure comes from."""

    def __init__(
        self, found: History, record: TenantRecord, rows: list[BalanceRow], clock: Clock
    ) -> None:
        self._found, self._clock = found, clock
        # The trail reaches back to reached_ms; before the tenant existed, nothing was spent.
        self._from = found.reached_ms if found.reached_ms > record.created_ms else None
        self._ledger: dict[tuple[str, str], int] = {
            (r.unit, r.period_id): r.spent
            for r in rows
            if r.level == "tenant" and r.value == record.id
        }

    def _point(self, unit: str, label: str, pid: str, start: int, end: int, days: int) -> Point:
        if (unit, pid) in self._ledger:
            return Point(label, self._ledger[(unit, pid)], "ledger")
        first = parse_pid(pid)
        total = sum(
            self._found.daily.get((unit, first + timedelta(days=i)), 0) for i in range(days)
        )
        if self._from is None or start >= self._from:
            return Point(label, total, "audit")
        if end > self._from:
            return Point(label, total, "partial")
        return Point(label, None, "unknown")

    def days(self, unit: str, first: date) -> tuple[Point, ...]:
        out = []
        for i in range(DAYS):
            day = first + timedelta(days=i)
            start = utc_ms(day, self._clock.offset_min)
            pid = f"d{day:%Y%m%d}"
            out.append(self._point(unit, day.isoformat(), pid, start, start + DAY_MS, 1))
        return tuple(out)

    def months(self, unit: str, pids: list[str], anchor_day: int) -> tuple[Point, ...]:
        out = []
        for pid in pids:
            start = utc_ms(parse_pid(pid), self._clock.offset_min)
            end = period_end_ms(pid, self._clock.offset_min, anchor_day)
            days = (end - start + DAY_MS // 2) // DAY_MS
            label = f"from {parse_pid(pid).isoformat()}"
            out.append(self._point(unit, label, pid, start, end, days))
        return tuple(out)
