"""Every figure of a limit report, from a tenant's daily rollups (pure: no I/O).

The rules, each named in the report and in README's "Reports":

- The window is the last `days` days of the tenant's calendar, today included; every day in it
  from the tenant's first day with rollups on counts, a day without a rollup as zero spend (a
  new tenant's days before it had any are not zero-spend days).
- Daily spend percentiles are nearest-rank: of the n daily spends sorted, the p-th percentile
  is the ceil(p/100 * n)-th.
- A day the limit was hit: the line denied a call that day (enforced or, in shadow, would have),
  or its spend in the period reached the limit by the day's end.
- Over-reservation: the window's reserved estimates over its committed actuals, to 4 places.
- Recommended limit, by the first rule that applies, then never below what the line spent in
  one period (`observed-max`) unless it denied a call (or would have), and rounded up to a
  cent (USD):
  `too-little-history` for a line with under MIN_HISTORY_DAYS days of history in the window:
  the limit in force (a day or two of spend extrapolated to a month says nothing);
  `p95-daily` for a line with a period: p95 of daily spend x the current period's days x
  HEADROOM; `peak-value` for runs and end users (one line per value, summed in the rollups):
  the largest one value's spend in its period x HEADROOM. A line that denied calls (enforced)
  is never recommended below the limit it denied them at (`denied-at-limit`), and one that
  never denied (nor would have) never below its forecast for the current period
  (`forecast`).
- Forecast of the period's end spend: spent so far + the mean daily spend of the window's last
  RECENT_DAYS days x the days left in the period after today, rounded up; for a tenant in
  enforce mode at most the limit (enforcement stops the spend there), or what it spent already.
  A lifetime line (period none) has no end: its forecast is what it spent.
- Shadow: the calls the line would have denied, on how many days, the first of them, and the
  spend enforcement would have refused: each day's spend beyond the limit in its period.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from proxy.policy.runtime import LEVELS
from proxy.store.ledger.base import DayRollup

HEADROOM = Fraction(6, 5)
"""A recommended limit leaves 20 % above what the history asks for."""
RECENT_DAYS = 7
"""The forecast's rate: the mean daily spend of the window's last week."""
MIN_HISTORY_DAYS = 7
"""Below a week of history a line's percentiles say nothing yet: its limit is kept."""
CENT = {"USD": 10**6}
"""What a recommended limit is rounded up to, by unit (USD units are 10**-8 dollars)."""
EVERY = "*"
"""The value of a run or end-user row: every value summed (spend) or the largest (peaks)."""
TENANT_WIDE = "-"


@dataclass(frozen=True, slots=True)
class Window:
    """The days a report covers: `days` days ending on `last`, the tenant's today."""

    last: date
    days: int

    @property
    def first(self) -> date:
        return self.last - timedelta(days=self.days - 1)

    def dates(self) -> list[str]:
        return [(self.first + timedelta(days=i)).isoformat() for i in range(self.days)]


@dataclass(frozen=True, slots=True)
class Period:
    """The line's period current today: [start, end) in local dates, and its id."""

    id: str
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days


@dataclass(frozen=True, slots=True)
class Shadow:
    """What enforcing the line's limit would have done over the window."""

    denials: int
    days: int
    first: str | None
    refused: int


@dataclass(frozen=True, slots=True)
class Recommendation:
    units: int
    rule: str
    why: str


@dataclass(frozen=True, slots=True)
class LineReport:
    level: str
    value: str
    unit: str
    period: str
    limit: int
    spent_this_period: int | None
    """None for run and end-user rows (one period per value); a lifetime line's all it spent."""
    days: int
    p50: int
    p95: int
    max: int
    days_hit: int
    calls: int
    denials: Mapping[str, int]
    degradations: Mapping[str, int]
    reserved: int
    committed: int
    over_reservation: Decimal | None
    """None when nothing was committed."""
    shadow: Shadow
    recommended: Recommendation
    forecast: int | None
    """None for runs and end users; a lifetime line's is what it spent (its period never ends)."""


@dataclass(frozen=True, slots=True)
class TenantReport:
    tenant: str
    mode: str
    window: Window
    lines: tuple[LineReport, ...]
    other_denials: Mapping[str, int]
    """Denials no budget line made (quotas, the tenant's status): the tenant-wide rows."""
    other_shadow_denials: int

    @property
    def shadowed(self) -> bool:
        """Whether the report carries the shadow table: a tenant in shadow mode, or one whose
        history has would-be denials (it was in shadow for part of the window)."""
        return self.mode == "shadow" or any(line.shadow.denials for line in self.lines)


def nearest_rank(values: Sequence[int], percent: int) -> int:
    """The `percent`-th percentile by nearest rank (0 for no values)."""
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent * len(ordered) / 100)) - 1]


def daily(rows: Sequence[DayRollup], window: Window, since: str = "") -> list[int]:
    """Spend on each day of the window from `since` (the tenant's first day with rollups) on,
    zero for a day without a row."""
    by_day = Counter[str]()
    for row in rows:
        by_day[row.day] += row.spent
    return [by_day[d] for d in window.dates() if d >= since]


def hit(row: DayRollup) -> bool:
    """The line denied (or would have) that day, or its period's spend reached its limit."""
    reached = row.limit > 0 and row.value_peak >= row.limit
    return sum(row.denials.values()) > 0 or row.shadow_denials > 0 or reached


def over_reservation(reserved: int, committed: int) -> Decimal | None:
    if committed == 0:
        return None
    exact = Decimal(reserved) / Decimal(committed)
    return exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)


def shadow(rows: Sequence[DayRollup]) -> Shadow:
    days = [r.day for r in rows if r.shadow_denials > 0]
    refused = sum(max(0, min(r.spent, r.value_peak - r.limit)) for r in rows)
    return Shadow(sum(r.shadow_denials for r in rows), len(days), min(days, default=None), refused)


def _round_up(units: int, unit: str) -> int:
    step = CENT.get(unit, 1)
    return -(-units // step) * step


def recommend(
    rows: Sequence[DayRollup], p95: int, period: Period | None, ahead: int | None, history: int
) -> Recommendation:
    """The recommended limit and the rule that produced it (module docstring); `ahead` is the
    line's forecast for its current period (None: it has none), `history` its days of history
    in the window."""
    last = rows[-1]
    peak = max(r.value_peak for r in rows)
    if history < MIN_HISTORY_DAYS:
        why = f"under {MIN_HISTORY_DAYS} days of history: the limit in force"
        rec = Recommendation(last.limit, "too-little-history", why)
    elif last.value == EVERY or period is None:
        units = math.ceil(peak * HEADROOM)
        rec = Recommendation(units, "peak-value", f"largest one {last.level}'s spend x 1.2")
    else:
        units = math.ceil(p95 * period.days * HEADROOM)
        why = f"p95 of daily spend x {period.days} days x 1.2"
        rec = Recommendation(units, "p95-daily", why)
    denied = any(sum(r.denials.values()) for r in rows)
    never = not denied and not any(r.shadow_denials for r in rows)
    if never and peak > rec.units:
        rec = Recommendation(peak, "observed-max", "the most spent in one period; never denied")
    if never and ahead is not None and ahead > rec.units:
        rec = Recommendation(ahead, "forecast", "this period's forecast; never denied")
    if denied and last.limit > rec.units:
        rec = Recommendation(last.limit, "denied-at-limit", "it denied calls at this limit")
    return Recommendation(_round_up(rec.units, last.unit), rec.rule, rec.why)


def forecast(
    spent: int, days: Sequence[int], today: date, period: Period, ceiling: int | None
) -> int:
    """Spent so far + the recent mean daily spend x the days left after today; an enforced
    line's at most its `ceiling` (its limit, or what it spent already when above it)."""
    recent = days[-RECENT_DAYS:]
    left = (period.end - today).days - 1
    ahead = spent + -(-sum(recent) * left // len(recent))
    return ahead if ceiling is None else min(ahead, max(ceiling, spent))


def line_report(
    rows: Sequence[DayRollup],
    window: Window,
    period: Period | None,
    spent: int,
    enforced: bool,
    since: str = "",
) -> LineReport:
    """One budget line's figures from its rows (oldest first) over `window` (its days from
    `since`, the tenant's first day with rollups, on); `period` is its current period (None for
    runs, end users and lifetime lines), `spent` what it holds spent there, and `enforced`
    whether its tenant is in enforce mode (which caps the forecast at the limit)."""
    last = rows[-1]
    days = daily(rows, window, since)
    p95 = nearest_rank(days, 95)
    reserved, committed = sum(r.reserved_sum for r in rows), sum(r.committed_sum for r in rows)
    current = period if last.value != EVERY else None
    lifetime = last.value != EVERY and last.period == "none"
    ceiling = last.limit if enforced else None
    ahead = spent if lifetime else None
    if current is not None:
        ahead = forecast(spent, days, window.last, current, ceiling)
    return LineReport(
        level=last.level,
        value=last.value,
        unit=last.unit,
        period=last.period,
        limit=last.limit,
        spent_this_period=spent if current is not None or lifetime else None,
        days=window.days,
        p50=nearest_rank(days, 50),
        p95=p95,
        max=max(days),
        days_hit=sum(1 for r in rows if hit(r)),
        calls=sum(r.calls for r in rows),
        denials=_summed(r.denials for r in rows),
        degradations=_summed(r.degradations for r in rows),
        reserved=reserved,
        committed=committed,
        over_reservation=over_reservation(reserved, committed),
        shadow=shadow(rows),
        recommended=recommend(rows, p95, current, ahead, len(days)),
        forecast=ahead,
    )


def _summed(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total = Counter[str]()
    for one in counts:
        total.update(one)
    return dict(sorted(total.items()))


def line_key(row: DayRollup) -> tuple[int, str, str, str]:
    """Lines in scope order, outermost first, then by value, unit and period."""
    order = LEVELS.index(row.level) if row.level in LEVELS else len(LEVELS)
    return order, row.value, row.unit, row.period
