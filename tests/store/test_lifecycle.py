"""The reservation lifecycle around reserve and commit (issue 15), on every store
(conftest.ALL_STORES): resets and late commits, run entries under open calls, time-zone
changes, a release by id alone, and the memory store's cost per reserve as runs grow."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator

import pytest
from conftest import EVERY_STORE
from hooks_support import quota_counters, sweep_tenant
from lifecycle_support import DAILY, HOUR, MONTHLY, Store, ask, at, create, usd_rows

from proxy.core.types import ReservationSettings
from proxy.gateway.spill import abandoned
from proxy.store.ledger import MemoryLedger
from proxy.store.ledger.base import BudgetLine, Quotas
from proxy.store.open import open_store

WORKFLOW = BudgetLine("workflow", "triage", "USD", "month", 1000)
RUN = BudgetLine("run", "r1", "USD", "none", 1000)
WEST, EAST = "Etc/GMT+11", "Etc/GMT-14"
"""UTC-11 and UTC+14 (the POSIX sign is inverted in the Etc zone names)."""


@pytest.fixture
async def short_cap(store_url: str) -> AsyncIterator[Store]:
    """A store whose reservations expire a minute after they are made."""
    stores = open_store(store_url, ReservationSettings(cap_ms=60_000))
    await create(stores)
    await at(stores, "2026-11-20T12:00:00")
    yield stores
    await stores.close()


async def expired_charged(store: Store, rid: str, usd: int, *lines: BudgetLine) -> object:
    """A reservation the sweeper charged at its estimate (a minute later)."""
    held = (await store.ledger.reserve(ask(rid, lines or (MONTHLY,), usd))).reservation
    assert held is not None
    await at(store, "2026-11-20T12:02:00")
    assert await sweep_tenant(store, "acme") == 1
    return held


# --- resets, credits and late commits --------------------------------------------------------


@EVERY_STORE
@pytest.mark.parametrize(("actual", "added"), [(110, 0), (700, 200)])
async def test_a_late_commit_never_refunds_an_expiry_charge_a_reset_wiped(
    short_cap: Store, actual: int, added: int
) -> None:
    late = await expired_charged(short_cap, "late", 500)
    assert await usd_rows(short_cap) == {"tenant|acme|m20261101": (500, 0)}
    await short_cap.tenants.reset("acme", level=None, value=None, actor="ops", reason="goodwill")
    other = (await short_cap.ledger.reserve(ask("other", usd=300))).reservation
    assert other is not None
    await short_cap.ledger.commit(other, {"USD": 300})
    settled = await short_cap.ledger.commit(late, {"USD": actual})  # type: ignore[arg-type]
    # The reset took the 500 away: only what the call cost beyond it is new spend.
    assert (settled.state, settled.charged) == ("COMMITTED", {"USD": added})
    assert await usd_rows(short_cap) == {"tenant|acme|m20261101": (300 + added, 0)}
    again = await short_cap.ledger.commit(late, {"USD": actual})  # type: ignore[arg-type]
    assert not again.first
    assert await usd_rows(short_cap) == {"tenant|acme|m20261101": (300 + added, 0)}


@EVERY_STORE
async def test_a_late_commit_refunds_an_expiry_charge_made_after_the_reset(
    short_cap: Store,
) -> None:
    done = (await short_cap.ledger.reserve(ask("done", usd=100))).reservation
    assert done is not None
    await short_cap.ledger.commit(done, {"USD": 100})
    held = (await short_cap.ledger.reserve(ask("late", usd=500))).reservation
    assert held is not None
    await short_cap.tenants.reset("acme", level=None, value=None, actor="ops", reason="goodwill")
    assert await usd_rows(short_cap) == {"tenant|acme|m20261101": (0, 500)}
    await at(short_cap, "2026-11-20T12:02:00")
    assert await sweep_tenant(short_cap, "acme") == 1
    settled = await short_cap.ledger.commit(held, {"USD": 110})
    assert settled.charged == {"USD": -390}
    assert await usd_rows(short_cap) == {"tenant|acme|m20261101": (110, 0)}


@EVERY_STORE
async def test_a_reset_of_one_line_keeps_the_refund_on_the_others(short_cap: Store) -> None:
    late = await expired_charged(short_cap, "late", 500, MONTHLY, WORKFLOW)
    await short_cap.tenants.reset("acme", level="workflow", value=None, actor="ops", reason="move")
    settled = await short_cap.ledger.commit(late, {"USD": 110})  # type: ignore[arg-type]
    assert settled.charged == {"USD": 0}  # the most any line got
    assert await usd_rows(short_cap) == {
        "tenant|acme|m20261101": (110, 0),
        "workflow|triage|m20261101": (0, 0),
    }


@EVERY_STORE
async def test_a_late_commit_to_a_line_already_dropped_never_takes_it_below_zero(
    store_url: str,
) -> None:
    stores = open_store(store_url, ReservationSettings(cap_ms=60_000, period_grace_ms=0))
    try:
        await create(stores)
        await at(stores, "2026-11-20T23:59:30")
        held = (await stores.ledger.reserve(ask("late", (DAILY,), 500))).reservation
        assert held is not None
        await at(stores, "2026-11-21T00:01:00")
        assert await sweep_tenant(stores, "acme") == 1  # charged, then its day's entries dropped
        assert await usd_rows(stores) == {}
        settled = await stores.ledger.commit(held, {"USD": 110})
        assert settled.charged == {"USD": 0}
        assert await usd_rows(stores) == {"tenant|acme|d20261120": (0, 0)}
    finally:
        await stores.close()


# --- run entries and open calls --------------------------------------------------------------


@EVERY_STORE
async def test_run_entries_outlive_their_open_calls_whatever_the_idle_ttl(store_url: str) -> None:
    stores = open_store(store_url, ReservationSettings(cap_ms=HOUR, run_idle_ms=60_000))
    try:
        await create(stores)
        await at(stores, "2026-11-20T12:00:00")
        steps = Quotas(steps_per_run=2)
        first = await stores.ledger.reserve(ask("a", (RUN,), 600, run="r1", quotas=steps))
        assert first.allowed
        await at(stores, "2026-11-20T12:30:00")  # idle 30 min, but the call is still open
        await sweep_tenant(stores, "acme")
        assert await usd_rows(stores) == {"run|r1|-": (0, 600)}
        over = await stores.ledger.reserve(ask("b", (RUN,), 600, run="r1", quotas=steps))
        assert (over.allowed, over.denied_by, over.lines[0].remaining) == (False, 0, 400)
        assert (await stores.ledger.reserve(ask("c", (RUN,), 300, run="r1", quotas=steps))).allowed
        fourth = await stores.ledger.reserve(ask("d", (RUN,), 10, run="r1", quotas=steps))
        assert fourth.quota == "steps_per_run"
    finally:
        await stores.close()


# --- time zones --------------------------------------------------------------------------------


async def day_spent(stores: Store, zone_offset: int) -> None:
    held = (
        await stores.ledger.reserve(ask("spent", (DAILY,), 1000, offset=zone_offset))
    ).reservation
    assert held is not None
    await stores.ledger.commit(held, {"USD": 1000})


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    stores = open_store(store_url, ReservationSettings())
    yield stores
    await stores.close()


@EVERY_STORE
async def test_a_zone_change_east_does_not_hand_out_a_fresh_day(store: Store) -> None:
    await create(store, timezone=WEST)
    await at(store, "2026-11-21T07:00:00")  # 20:00 on the 20th in UTC-11, the 21st in UTC+14
    await day_spent(store, -660)
    await store.tenants.update_tenant("acme", actor="ops", reason="moved", timezone=EAST)
    for when in ("2026-11-21T07:00:00", "2026-11-21T10:59:00"):
        await at(store, when)
        refused = await store.ledger.reserve(ask(when, (DAILY,), offset=840))
        assert (refused.allowed, refused.lines[0].period_id) == (False, "d20261120"), when
    await at(store, "2026-11-21T11:00:01")  # the held day's end in UTC-11
    fresh = await store.ledger.reserve(ask("next", (DAILY,), offset=840))
    assert (fresh.allowed, fresh.lines[0].period_id) == (True, "d20261122")


@EVERY_STORE
async def test_a_zone_change_west_carries_the_day_on_until_it_ends_there(store: Store) -> None:
    await create(store, timezone=EAST)
    await at(store, "2026-11-20T20:00:00")  # 10:00 on the 21st in UTC+14
    await day_spent(store, 840)
    await store.tenants.update_tenant("acme", actor="ops", reason="moved", timezone=WEST)
    # After its end in UTC+14 the new zone is still on the 20th, then the 21st: the held day
    # goes on until the 21st ends in UTC-11.
    for when in ("2026-11-20T20:00:00", "2026-11-21T10:00:01", "2026-11-22T10:59:00"):
        await at(store, when)
        refused = await store.ledger.reserve(ask(when, (DAILY,), offset=-660))
        assert (refused.allowed, refused.lines[0].period_id) == (False, "d20261121"), when
    await at(store, "2026-11-22T11:00:01")
    fresh = await store.ledger.reserve(ask("next", (DAILY,), offset=-660))
    assert (fresh.allowed, fresh.lines[0].period_id) == (True, "d20261122")


@EVERY_STORE
async def test_a_zone_change_at_month_end_keeps_the_month_until_it_ends(store: Store) -> None:
    await create(store, timezone=WEST)
    await at(store, "2026-11-30T12:00:00")  # the 30th in UTC-11, 1 December in UTC+14
    held = (await store.ledger.reserve(ask("spent", (MONTHLY,), 1000, offset=-660))).reservation
    assert held is not None
    await store.ledger.commit(held, {"USD": 1000})
    await store.tenants.update_tenant("acme", actor="ops", reason="moved", timezone=EAST)
    refused = await store.ledger.reserve(ask("same", (MONTHLY,), offset=840))
    assert (refused.allowed, refused.lines[0].period_id) == (False, "m20261101")
    await at(store, "2026-12-01T11:00:01")
    fresh = await store.ledger.reserve(ask("next", (MONTHLY,), offset=840))
    assert (fresh.allowed, fresh.lines[0].period_id) == (True, "m20261201")


# --- a reserve given up on ---------------------------------------------------------------------


@EVERY_STORE
async def test_a_release_by_id_frees_what_the_reserve_held_or_makes_it_reserve_nothing(
    store: Store,
) -> None:
    one = Quotas(concurrent=[("tenant", "acme", 1)])
    assert (await store.ledger.reserve(ask("ran", quotas=one))).allowed
    released = await store.ledger.release(abandoned("acme", "ran"))
    assert (released.state, released.first) == ("RELEASED", True)
    assert "q|conc|tenant|acme" not in await quota_counters(store, "acme")
    await store.ledger.release(abandoned("acme", "later"))  # its reserve has not run yet
    await store.ledger.reserve(ask("later", quotas=one))
    record = await store.ledger.reservation("acme", "later")
    assert record is not None and record.state == "RELEASED"
    assert [r.reserved for r in await store.ledger.balances("acme")] == [0]
    assert "q|conc|tenant|acme" not in await quota_counters(store, "acme")
    assert (await store.ledger.reserve(ask("next", quotas=one))).allowed


# --- memory:// cost per reserve ----------------------------------------------------------------


async def test_memory_reserve_time_does_not_grow_with_the_runs_of_a_tenant() -> None:
    """A tenant minting run ids (each adds three expiring entries) must not slow every reserve:
    the median reserve at 20 000 runs stays within a few times the one at 1 000."""
    ledger = MemoryLedger(ReservationSettings(), "me")
    quotas = Quotas(runs_per_day=10**9, steps_per_run=10**6)

    async def new_run(n: int) -> int:
        run = BudgetLine("run", f"r{n}", "USD", "none", 10**9)
        started = time.perf_counter_ns()
        result = await ledger.reserve(ask(f"c{n}", (MONTHLY, run), 1, run=f"r{n}", quotas=quotas))
        took = time.perf_counter_ns() - started
        assert result.reservation is not None
        await ledger.release(result.reservation)
        return took

    runs = 0

    async def median_at(size: int) -> float:
        nonlocal runs
        while runs < size:
            await new_run(runs)
            runs += 1
        sample = [await new_run(runs + i) for i in range(300)]
        runs += 300
        return statistics.median(sample)

    small, large = await median_at(1_000), await median_at(20_000)
    assert large < 4 * small, (small, large)
