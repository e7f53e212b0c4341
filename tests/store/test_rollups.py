# The ledger fixture is imported from ledger_support (on conftest's `opener`: every store);
# tests take it as an argument, which pyflakes reads as redefining the import.
# ruff: noqa: F811
"""The ledger's daily rollups (issue 18, History), on every store: exact figures after known
calls, the tenant's local day, the retention, and the rows of unbounded levels."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from conftest import EVERY_STORE, Opener
from hooks_support import set_status, sweep_tenant
from ledger_support import EXPIRE_NOW, ask, ledger, line  # noqa: F401
from rollups_support import DAY, NOON, at, reserved, wall_ms

from proxy.core.types import ReservationSettings
from proxy.store.ledger import MemoryLedger, RedisLedger
from proxy.store.ledger.base import (
    BudgetLine,
    Candidate,
    DayRollup,
    Ledger,
    Quotas,
    ReserveRequest,
)
from proxy.store.ledger.rollups import day_end_ms, local_day
from proxy.store.redis import layout


def row(day: str, level: str, value: str, unit: str, period: str, **figures: object) -> DayRollup:
    """A rollup with every figure 0 but those given."""
    base: dict[str, object] = {
        "limit": 0,
        "spent": 0,
        "reserved_peak": 0,
        "calls": 0,
        "reserved_sum": 0,
        "committed_sum": 0,
        "denials": {},
        "degradations": {},
        "shadow_denials": 0,
        "value_peak": 0,
    }
    return DayRollup(day, level, value, unit, period, **(base | figures))  # type: ignore[arg-type]


def wide(day: str, **figures: object) -> DayRollup:
    return row(day, "-", "-", "-", "-", **figures)


@EVERY_STORE
async def test_a_day_of_calls_is_summed_exactly(ledger: Ledger) -> None:
    await at(ledger, NOON)
    lines = [line(limit=1000), line("workflow", "triage", limit=500)]
    a = await reserved(ledger, ask("a", lines, {"USD": 300}))
    b = await reserved(ledger, ask("b", lines, {"USD": 100}))
    await ledger.commit(a, {"USD": 250})
    await ledger.release(b)
    denied = await ledger.reserve(ask("c", lines, {"USD": 300}))
    assert denied.denied_by == 1
    figures = {
        "spent": 250,
        "reserved_peak": 400,
        "calls": 2,
        "reserved_sum": 400,
        "committed_sum": 250,
        "value_peak": 250,
    }
    assert await ledger.rollups("acme", "2026-03-10") == [
        wide("2026-03-10", calls=2),
        row("2026-03-10", "tenant", "acme", "USD", "month", limit=1000, **figures),
        row(
            "2026-03-10",
            "workflow",
            "triage",
            "USD",
            "month",
            limit=500,
            denials={"budget": 1},
            **figures,
        ),
    ]
    assert await ledger.rollups("acme", "2026-03-11", "2026-03-12") == []
    assert await ledger.rollups("acme", "2026-03-11") == []  # after the tenant's today


@EVERY_STORE
async def test_denials_degrades_and_shadow_are_counted_where_they_were_made(
    ledger: Ledger,
) -> None:
    await at(ledger, NOON)
    small = [line(limit=1000, period="day")]
    steps = Quotas(steps_per_run=1)
    cheaper = Candidate({"USD": 40}, name="cheaper")
    await reserved(ledger, ask("d1", small, {"USD": 60}, cheaper))
    await ledger.release(await reserved(ledger, ask("s1", small, {"USD": 2000}, shadow=True)))
    await reserved(ledger, ask("q1", small, {"USD": 1}, run="r1", quotas=steps))
    assert (await ledger.reserve(ask("q2", small, {"USD": 1}, run="r1", quotas=steps))).quota
    await reserved(ledger, ask("q3", small, {"USD": 1}, run="r1", quotas=steps, shadow=True))
    await set_status(ledger, "acme", "suspended")
    assert not (await ledger.reserve(ask("x", small, {"USD": 1}))).allowed
    assert await ledger.rollups("acme", "2026-03-10", "2026-03-10") == [
        wide(
            "2026-03-10",
            calls=4,
            denials={"quota:steps_per_run": 1, "tenant_suspended": 1},
            shadow_denials=1,
        ),
        row(
            "2026-03-10",
            "tenant",
            "acme",
            "USD",
            "day",
            limit=1000,
            calls=4,
            reserved_sum=2042,
            reserved_peak=2040,
            degradations={"cheaper": 1},
            shadow_denials=1,
        ),
    ]


@EVERY_STORE
async def test_runs_and_end_users_are_one_row_per_level(ledger: Ledger) -> None:
    await at(ledger, NOON)

    def lines(run: str, user: str) -> list[BudgetLine]:
        return [line("run", run, limit=1000, period="none"), line("user", user, limit=1000)]

    r1 = await reserved(ledger, ask("a", lines("r1", "u1"), {"USD": 300}))
    r2 = await reserved(ledger, ask("b", lines("r2", "u1"), {"USD": 200}))
    await ledger.commit(r1, {"USD": 300})
    await ledger.commit(r2, {"USD": 200})
    r3 = await reserved(ledger, ask("c", lines("r2", "u2"), {"USD": 50}))
    await ledger.commit(r3, {"USD": 50})
    common = {"spent": 550, "calls": 3, "reserved_sum": 550, "committed_sum": 550}
    assert await ledger.rollups("acme", "2026-03-10") == [
        wide("2026-03-10", calls=3),
        # The most one run held at once (r1's 300), the most one run spent (r1's 300).
        row(
            "2026-03-10",
            "run",
            "*",
            "USD",
            "none",
            limit=1000,
            reserved_peak=300,
            value_peak=300,
            **common,
        ),
        # u1 held 500 at once and spent 500 this month.
        row(
            "2026-03-10",
            "user",
            "*",
            "USD",
            "month",
            limit=1000,
            reserved_peak=500,
            value_peak=500,
            **common,
        ),
    ]


@EVERY_STORE
async def test_the_day_is_the_tenants_local_day_even_for_settles(ledger: Ledger) -> None:
    late = NOON + 11 * 3_600_000 + 1_800_000  # 23:30 UTC, 00:30 the next day at UTC+1
    await at(ledger, late)
    lines = [line(limit=1000)]
    a = await reserved(ledger, ask("a", lines, {"USD": 300}))  # UTC: on the 10th
    b = await ledger.reserve(
        ReserveRequest("acme", "b", lines, [Candidate({"USD": 100})], utc_offset_min=60)
    )
    assert b.reservation is not None
    await ledger.commit(a, {"USD": 200})  # no offset of its own: the last reserve's, UTC+1
    days = [(r.day, r.level, r.calls, r.spent) for r in await ledger.rollups("acme", "2026-03-01")]
    assert days == [
        ("2026-03-10", "-", 1, 0),
        ("2026-03-10", "tenant", 1, 0),
        ("2026-03-11", "-", 1, 0),
        ("2026-03-11", "tenant", 1, 200),
    ]


@EVERY_STORE
async def test_a_day_without_a_reserve_takes_the_limit_of_the_day_before(ledger: Ledger) -> None:
    await at(ledger, NOON)
    a = await reserved(ledger, ask("a", [line(limit=1000)], {"USD": 300}))
    await at(ledger, NOON + DAY)
    await ledger.commit(a, {"USD": 280})
    assert await ledger.rollups("acme", "2026-03-11") == [
        row(
            "2026-03-11",
            "tenant",
            "acme",
            "USD",
            "month",
            limit=1000,
            spent=280,
            committed_sum=280,
            value_peak=280,
        ),
    ]


@EVERY_STORE
async def test_expiry_charges_and_late_differences_are_spent_that_day(opener: Opener) -> None:
    ledger = opener.open(EXPIRE_NOW).ledger
    await at(ledger, NOON)
    a = await reserved(ledger, ask("a", [line(limit=1000)], {"USD": 300}))
    assert await sweep_tenant(ledger, "acme") == 1
    await ledger.commit(a, {"USD": 120})  # after the expiry charge: 120 - 300
    (tenant,) = [r for r in await ledger.rollups("acme", "2026-03-10") if r.level == "tenant"]
    assert (tenant.spent, tenant.committed_sum, tenant.value_peak) == (120, 120, 120)


@EVERY_STORE
async def test_days_past_the_retention_are_gone(opener: Opener) -> None:
    settings = ReservationSettings(history_retention_ms=2 * DAY)
    ledger = opener.open(settings).ledger
    await at(ledger, NOON)
    a = await reserved(ledger, ask("a", [line(limit=1000)], {"USD": 300}))
    await ledger.commit(a, {"USD": 300})
    day = local_day(NOON, 0)
    if isinstance(ledger, RedisLedger):
        key = layout.day_key("acme", "20260310")
        expires = await ledger.scripts.client.pexpiretime(key)
        skew = NOON - wall_ms()
        assert abs(expires - (day_end_ms(day, 0) + 2 * DAY - skew)) < 60_000
    await at(ledger, day_end_ms(day, 0) + 2 * DAY - 60_000)
    assert [r.day for r in await ledger.rollups("acme", "2026-03-01")] == ["2026-03-10"] * 2
    await at(ledger, day_end_ms(day, 0) + 2 * DAY + 60_000)
    assert await ledger.rollups("acme", "2026-03-01") == []
    await reserved(ledger, ask("b", [line(limit=1000)], {"USD": 1}))
    if isinstance(ledger, MemoryLedger):  # the memory store forgets it on its next write
        assert sorted(ledger._tenant("acme").days.days) == [day + 3]


async def test_the_memory_store_keeps_no_more_days_than_the_retention() -> None:
    settings = ReservationSettings(history_retention_ms=3 * DAY)
    ledger = MemoryLedger(settings, clock=wall_ms)
    for i in range(10):
        await at(ledger, NOON + i * DAY)
        await reserved(ledger, ask(f"r{i}", [line(limit=1000, period="day")], {"USD": 1}))
        assert len(ledger._tenant("acme").days.days) <= 4
    rows = await ledger.rollups("acme", "2026-03-01")
    assert sorted({r.day for r in rows}) == ["2026-03-16", "2026-03-17", "2026-03-18", "2026-03-19"]


@EVERY_STORE
async def test_tenants_see_only_their_own_rollups(ledger: Ledger) -> None:
    await at(ledger, NOON)
    await at(ledger, NOON, "globex")
    await reserved(ledger, ask("a", [line(limit=1000)], {"USD": 300}))
    await reserved(ledger, ask("b", [line(value="globex")], {"USD": 7}, tenant="globex"))
    rows = await ledger.rollups("globex", "2026-03-10", "2026-03-10")
    assert [(r.level, r.value, r.reserved_sum) for r in rows] == [
        ("-", "-", 0),
        ("tenant", "globex", 7),
    ]


@EVERY_STORE
@pytest.mark.parametrize(("since", "until"), [("10/03/2026", None), ("2026-03-10", "2026-03-09")])
async def test_a_bad_range_is_refused(ledger: Ledger, since: str, until: str | None) -> None:
    with pytest.raises(ValueError, match="rollups"):
        await ledger.rollups("acme", since, until)


async def test_the_memory_sweeper_forgets_days_past_the_retention() -> None:
    ledger = MemoryLedger(ReservationSettings(history_retention_ms=DAY), clock=wall_ms)
    await at(ledger, NOON)
    await ledger.release(await reserved(ledger, ask("a", [line(limit=1000)], {"USD": 1})))
    await at(ledger, NOON + 3 * DAY)
    await sweep_tenant(ledger, "acme")
    assert ledger._tenant("acme").days.days == {}


@EVERY_STORE
async def test_a_stale_or_repeated_reserve_adds_nothing(ledger: Ledger) -> None:
    await at(ledger, NOON)
    request = ask("a", [line(limit=1000)], {"USD": 300})
    a = await reserved(ledger, request)
    before = await ledger.rollups("acme", "2026-03-10")
    await ledger.reserve(request)
    stale = ReserveRequest("acme", "b", [line()], [Candidate({"USD": 1})], version=7)
    # UTC+14: were its zone recorded, the commit below would fall on the 11th.
    assert (await ledger.reserve(replace(stale, utc_offset_min=840))).stale
    assert await ledger.rollups("acme", "2026-03-10") == before
    await ledger.commit(a, {"USD": 300})
    rows = await ledger.rollups("acme", "2026-03-10", "2026-03-11")
    assert [(r.day, r.level, r.calls, r.spent) for r in rows] == [
        ("2026-03-10", "-", 1, 0),
        ("2026-03-10", "tenant", 1, 300),
    ]


@EVERY_STORE
async def test_concurrent_calls_are_each_counted_once(ledger: Ledger) -> None:
    await at(ledger, NOON)
    lines = [line(limit=1000)]
    results = await asyncio.gather(
        *(ledger.reserve(ask(f"c{i}", lines, {"USD": 100})) for i in range(25))
    )
    assert sum(r.allowed for r in results) == 10
    (wide_row, tenant) = await ledger.rollups("acme", "2026-03-10")
    assert (wide_row.calls, tenant.calls, tenant.reserved_sum, tenant.reserved_peak) == (
        10,
        10,
        1000,
        1000,
    )
    assert tenant.denials == {"budget": 15}
