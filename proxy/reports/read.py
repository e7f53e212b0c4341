"""Reading what a limit report needs: the tenant's calendar, rollups and current spend.

Three reads per tenant: the tenant's today and current month as the ledger computes them (a
`lines` probe, as the dashboard reads its clock), the window's rollups, and the spend of each
line with a period in its current period (`lines` again, as a reserve would see it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, timedelta
from typing import cast

from proxy.core.errors import BadRequest
from proxy.core.types import Period as PeriodKind
from proxy.reports.figures import EVERY, Period, TenantReport, Window
from proxy.reports.tenant import LineId, by_line, tenant_report
from proxy.store.ledger.base import BudgetLine, Ledger
from proxy.store.ledger.calendar import local_date, period_end_ms
from proxy.store.tenants import TenantRecord, TenantStore
from proxy.store.tenants.records import utc_offset_min

MAX_DAYS = 3660
"""The longest window: the longest rollup retention a policy may set."""
PAGE = 200
_SINCE = re.compile(r"([0-9]{1,4})d")
_NUMBER = re.compile(r"[0-9]{1,4}")


def ascii_number(raw: str) -> int | None:
    """`raw` as a number of 1 to 4 ASCII digits, else None: `str.isdigit` and `int` also take
    other scripts' digits and superscripts ('²'), which `int` may then refuse."""
    return int(raw) if _NUMBER.fullmatch(raw) else None


def window_days(since: str) -> int:
    """`30d` → 30: the window's length in days, today included."""
    found = _SINCE.fullmatch(since.strip())
    days = int(found.group(1)) if found else 0
    if not 1 <= days <= MAX_DAYS:
        raise BadRequest(
            f"'since' is a number of days written like 30d, 1d to {MAX_DAYS}d; not {since[:40]!r}.",
            param="since",
        )
    return days


def _pid_date(pid: str) -> date:
    return date(int(pid[1:5]), int(pid[5:7]), int(pid[7:9]))


async def _periods(ledger: Ledger, record: TenantRecord, offset: int) -> dict[str, Period]:
    """The tenant's current day and month, as a reserve would compute them."""
    probes = [BudgetLine("tenant", record.id, "USD", p, 0) for p in ("day", "month")]
    day, month = (line.period_id for line in await ledger.lines(record.id, probes, offset))
    today, start = _pid_date(day), _pid_date(month)
    end = local_date(period_end_ms(month, offset, record.anchor_day), offset)
    return {
        "day": Period(day, today, today + timedelta(days=1)),
        "month": Period(month, start, end),
    }


async def read_report(ledger: Ledger, record: TenantRecord, mode: str, days: int) -> TenantReport:
    """The tenant's report over the last `days` days of its calendar; `mode` as it is in force
    (the record's, else the policy's)."""
    offset = utc_offset_min(record.timezone)
    periods = await _periods(ledger, record, offset)
    window = Window(periods["day"].start, days)
    rollups = await ledger.rollups(record.id, window.first.isoformat(), window.last.isoformat())
    current = [
        BudgetLine(level, value, unit, cast(PeriodKind, period), 0)
        for level, value, unit, period in by_line(rollups)
        if value != EVERY and (period in periods or period == "none")
    ]
    got = await ledger.lines(record.id, current, offset) if current else []
    spent: dict[LineId, int] = {
        (b.line.level, b.line.value, b.line.unit, b.line.period): b.spent for b in got
    }
    return tenant_report(record.id, mode, window, rollups, periods, spent)


async def read_reports(
    ledger: Ledger,
    tenants: TenantStore,
    *,
    days: int,
    default_mode: str,
    only: str | None = None,
    after: str | None = None,
    limit: int = PAGE,
) -> tuple[list[TenantReport], str | None]:
    """Reports of `only`, or of up to `limit` tenants after the cursor `after` (in id order),
    and the cursor of the next page (None at the end). An unknown `only` gives no report."""
    if only is not None:
        record = await tenants.get_tenant(only)
        records: Sequence[TenantRecord] = [] if record is None else [record]
    else:
        records = await tenants.list_tenants(after=after, limit=limit)
    reports = [await read_report(ledger, r, r.mode or default_mode, days) for r in records]
    cursor = records[-1].id if only is None and len(records) == limit else None
    return reports, cursor
