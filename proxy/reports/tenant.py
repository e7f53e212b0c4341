"""A tenant's report from its rollups, its lines' current periods and their spend (pure)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from proxy.reports.figures import (
    EVERY,
    TENANT_WIDE,
    Period,
    TenantReport,
    Window,
    line_key,
    line_report,
)
from proxy.store.ledger.base import DayRollup

LineId = tuple[str, str, str, str]
"""(level, value, unit, period): a scope with a day and a month budget in one unit has two."""


def by_line(rollups: Sequence[DayRollup]) -> dict[LineId, list[DayRollup]]:
    """The budget lines' rows, oldest first, lines in scope order (the tenant-wide rows apart)."""
    lines: dict[LineId, list[DayRollup]] = defaultdict(list)
    for row in sorted(rollups, key=lambda r: r.day):
        if row.level != TENANT_WIDE:
            lines[(row.level, row.value, row.unit, row.period)].append(row)
    return {k: lines[k] for k in sorted(lines, key=lambda k: line_key(lines[k][0]))}


def current(rows: Sequence[DayRollup], periods: Mapping[str, Period]) -> Period | None:
    """The line's period current today, by the kind its last row names; None for runs and end
    users (each value has its own) and lines without a period."""
    last = rows[-1]
    return None if last.value == EVERY else periods.get(last.period)


def tenant_report(
    tenant: str,
    mode: str,
    window: Window,
    rollups: Sequence[DayRollup],
    periods: Mapping[str, Period],
    spent: Mapping[LineId, int],
) -> TenantReport:
    """`periods`: the current period of each kind ("day", "month"); `spent`: what each line
    holds spent in its current period."""
    since = min((r.day for r in rollups), default="")
    enforced = mode == "enforce"
    lines = tuple(
        line_report(rows, window, current(rows, periods), spent.get(key, 0), enforced, since)
        for key, rows in by_line(rollups).items()
    )
    wide = [r for r in rollups if r.level == TENANT_WIDE]
    other = Counter[str]()
    for row in wide:
        other.update(row.denials)
    return TenantReport(
        tenant=tenant,
        mode=mode,
        window=window,
        lines=lines,
        other_denials=dict(sorted(other.items())),
        other_shadow_denials=sum(r.shadow_denials for r in wide),
    )
