"""Thirty days of history written through a real ledger, with the answers a limit report must
give for it worked out by hand (test_report_history, test_report_surfaces).

Each day is written with the tenant's clock moved to noon of that day (hooks_support
set_clock_offset); the last day is today, so the report's window is the 30 days seeded.

- `steady` (enforce): a $100 month line; one call a day reserving $4, committing $3.
- `spiky` (enforce): a $10 day line; a $2 call a day, but on day 20 five calls reach the $10
  and two more are denied, and on day 21 calls of $2, $2, $2 and $1 spend $7.
- `quiet` (shadow): a $10 day line; a $5 call a day, but on day 10 seven $2 calls ($14: the
  last two would have been denied) and on day 12 six ($12: the last one would have been).
"""

from __future__ import annotations

import calendar
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from hooks_support import set_clock_offset
from support import policy

from proxy.admin.app import build_admin_app
from proxy.admin.auth import Tokens
from proxy.app import shared
from proxy.store.ledger.base import BudgetLine, Candidate, Ledger, ReserveRequest
from proxy.store.ledger.calendar import utc_ms
from proxy.store.open import Stores
from proxy.store.tenants import TenantRecord
from proxy.testing.local import Stack, local_stack, serving

USD = 10**8
DAYS = 30
NOON_MS = 12 * 3_600_000
TENANTS = {"steady": "enforce", "spiky": "enforce", "quiet": "shadow"}


def today() -> date:
    return datetime.now(UTC).date()


def seeded_days(last: date) -> list[date]:
    return [last - timedelta(days=DAYS - 1 - i) for i in range(DAYS)]


def _line(tenant: str, period: str, dollars: int) -> BudgetLine:
    return BudgetLine("tenant", tenant, "USD", period, dollars * USD)  # type: ignore[arg-type]


async def _call(
    ledger: Ledger, line: BudgetLine, estimate: int, actual: int, shadow: bool = False
) -> None:
    """One call: reserve `estimate` dollars on the line and commit `actual`; a denied call (or a
    shadow call enforcement would have denied, which goes ahead) counts as such in the store."""
    amounts = {"USD": estimate * USD}
    request = ReserveRequest(
        line.value, uuid.uuid4().hex, [line], [Candidate(amounts)], shadow=shadow
    )
    result = await ledger.reserve(request)
    if result.reservation is not None:
        await ledger.commit(result.reservation, {"USD": actual * USD})


def _calls(tenant: str, index: int) -> list[tuple[int, int]]:
    """(estimate, actual) dollars of each call the tenant makes on day `index` (0: the first)."""
    if tenant == "steady":
        return [(4, 3)]
    if tenant == "spiky":
        return {20: [(2, 2)] * 7, 21: [(2, 2)] * 3 + [(1, 1)]}.get(index, [(2, 2)])
    return {10: [(2, 2)] * 7, 12: [(2, 2)] * 6}.get(index, [(5, 5)])


async def seed(stores: Stores) -> date:
    """The three tenants' records and 30 days of their history; returns the last day (today
    in their calendar, where their clocks are left)."""
    last = today()
    for tenant, mode in TENANTS.items():
        record = TenantRecord(tenant, "test", mode=mode)  # type: ignore[arg-type]
        await stores.tenants.create_tenant(record, actor="test")
        line = _line(
            tenant, "month" if tenant == "steady" else "day", 100 if tenant == "steady" else 10
        )
        for index, day in enumerate(seeded_days(last)):
            offset = utc_ms(day, 0) + NOON_MS - int(time.time() * 1000)
            await set_clock_offset(stores.ledger, tenant, offset)
            for estimate, actual in _calls(tenant, index):
                await _call(stores.ledger, line, estimate, actual, shadow=mode == "shadow")
    return last


def money(dollars: float | int, cents: int = 0) -> dict[str, Any]:
    units = int(dollars) * USD + cents * 10**6
    whole, micro = divmod(units // 100, 10**6)
    return {"units": units, "unit": "USD", "text": f"{whole}.{micro:06d} USD"}


@dataclass(frozen=True)
class Steady:
    """What the steady tenant's month line must show on `last`."""

    last: date

    @property
    def month_days(self) -> int:
        return calendar.monthrange(self.last.year, self.last.month)[1]

    @property
    def in_month(self) -> int:
        """Seeded days in the current month."""
        return sum(1 for d in seeded_days(self.last) if d >= self.last.replace(day=1))

    def figures(self) -> dict[str, Any]:
        spent = 3 * self.in_month
        recommended = 3 * self.month_days * 120  # cents: $3 x days x 1.2
        return {
            "limit": money(100),
            "spent_this_period": money(spent),
            "daily_spend": {"p50": money(3), "p95": money(3), "max": money(3)},
            "days_limit_hit": 0,
            "calls": 30,
            "denials": 0,
            "over_reservation": "1.3333",
            "shadow_denials": 0,
            "recommended_limit": money(recommended // 100, recommended % 100),
            "recommended_rule": "p95-daily",
            "forecast": money(spent + 3 * (self.month_days - self.last.day)),
        }


def spiky_figures() -> dict[str, Any]:
    return {
        "limit": money(10),
        "spent_this_period": money(2),
        "daily_spend": {"p50": money(2), "p95": money(7), "max": money(10)},
        "days_limit_hit": 1,
        "calls": 28 + 5 + 4,
        "denials": 2,
        "denials_by_reason": {"budget": 2},
        "over_reservation": "1.0000",
        "shadow_denials": 0,
        "recommended_limit": money(10),  # $7 x 1.2 = $8.40, but it denied calls at $10
        "recommended_rule": "denied-at-limit",
        "forecast": money(2),
    }


def quiet_figures(last: date) -> dict[str, Any]:
    return {
        "limit": money(10),
        "spent_this_period": money(5),
        "daily_spend": {"p50": money(5), "p95": money(12), "max": money(14)},
        "days_limit_hit": 2,
        "calls": 28 + 7 + 6,
        "denials": 0,
        "shadow_denials": 3,
        "shadow_days": 2,
        "shadow_first_day": seeded_days(last)[10].isoformat(),
        "shadow_refused": money(6),
        "recommended_limit": money(14, 40),
        "recommended_rule": "p95-daily",
        "forecast": money(5),
    }


def expected(last: date) -> dict[str, dict[str, Any]]:
    """Each tenant's tenant-level line, as the report's JSON gives it (the figures named)."""
    return {
        "steady": Steady(last).figures(),
        "spiky": spiky_figures(),
        "quiet": quiet_figures(last),
    }


def line_of(report: dict[str, Any]) -> dict[str, Any]:
    [line] = [x for x in report["lines"] if x["level"] == "tenant"]
    return line  # type: ignore[no-any-return]


def check(reports: list[dict[str, Any]], last: date, only: str | None = None) -> None:
    """Every figure `expected` names equals the report's (of `only`, else of every tenant)."""
    want = expected(last)
    assert sorted(r["tenant"] for r in reports) == sorted([only] if only else want)
    for report in reports:
        line = line_of(report)
        got = {k: line[k] for k in want[report["tenant"]]}
        assert got == want[report["tenant"]], report["tenant"]
        assert report["mode"] == TENANTS[report["tenant"]]
        assert report["until"] == last.isoformat() and report["days"] == DAYS


ADMIN, READER = "admin-token-1", "read-token-1"
LIMITS = "/admin/v1/reports/limits"


@asynccontextmanager
async def admin(tmp_path: Path, store: str) -> AsyncIterator[tuple[str, Stack, Any]]:
    """The admin listener on a proxy stack; yields its URL, the stack, a client session."""
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol, store=store) as stack:
        admin_app = build_admin_app(shared(stack.app), tokens=Tokens((ADMIN,), (READER,)))
        async with serving(admin_app) as url, aiohttp.ClientSession() as client:
            yield url, stack, client


async def get(client: aiohttp.ClientSession, url: str, token: str = READER) -> tuple[int, Any]:
    async with client.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
        text = await r.text()
        return r.status, orjson.loads(text) if r.content_type == "application/json" else text
