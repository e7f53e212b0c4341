"""End users' entries expire when idle (issue 18), on every store: never before their period
ends (the user would be handed the period's budget again), an active user's not before it has
been idle `user_idle_ms`, none later than a period entry of another level, and a thousand users
gone idle leave nothing behind (the memory store's heaps included)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest import EVERY_STORE
from hooks_support import sweep_tenant
from lifecycle_support import DAILY, HOUR, Store, ask, at, create, usd_rows

from proxy.core.types import ReservationSettings
from proxy.store.ledger import MemoryLedger, RedisLedger
from proxy.store.ledger.base import BudgetLine
from proxy.store.open import open_store
from proxy.store.redis import layout

pytestmark = EVERY_STORE

DAY_USER = BudgetLine("user", "u1", "USD", "day", 500)
LIFETIME_USER = BudgetLine("user", "u1", "USD", "none", 500)


@pytest.fixture
async def hour_idle(store_url: str) -> AsyncIterator[Store]:
    """Users idle an hour may go; reservations last a minute; on 2026-11-20 at noon."""
    stores = open_store(store_url, ReservationSettings(cap_ms=60_000, user_idle_ms=HOUR))
    await create(stores)
    await at(stores, "2026-11-20T12:00:00")
    yield stores
    await stores.close()


async def spend(store: Store, rid: str, usd: int, *lines: BudgetLine) -> None:
    held = (await store.ledger.reserve(ask(rid, (DAILY, *lines), usd))).reservation
    assert held is not None
    await store.ledger.commit(held, {"USD": usd})


async def test_an_idle_users_day_is_kept_until_it_ends_then_dropped(hour_idle: Store) -> None:
    await spend(hour_idle, "a", 200, DAY_USER)
    await at(hour_idle, "2026-11-20T23:59:00")  # idle for hours, but its day still runs
    await sweep_tenant(hour_idle, "acme")
    assert await usd_rows(hour_idle) == {
        "tenant|acme|d20261120": (200, 0),
        "user|u1|d20261120": (200, 0),
    }
    over = await hour_idle.ledger.reserve(ask("b", (DAILY, DAY_USER), 301))
    assert (over.allowed, over.denied_by, over.lines[1].remaining) == (False, 1, 300)
    await at(hour_idle, "2026-11-21T00:00:01")
    await sweep_tenant(hour_idle, "acme")
    # The tenant's day is kept for its grace (late commits, balances); the user's is gone.
    assert await usd_rows(hour_idle) == {"tenant|acme|d20261120": (200, 0)}


async def test_an_active_users_day_outlives_its_end_by_the_idle_time(hour_idle: Store) -> None:
    await at(hour_idle, "2026-11-20T23:30:00")
    await spend(hour_idle, "a", 200, DAY_USER)
    await at(hour_idle, "2026-11-21T00:30:00")  # 23:30 + the call's minute + an hour is 00:31
    await sweep_tenant(hour_idle, "acme")
    assert "user|u1|d20261120" in await usd_rows(hour_idle)
    await at(hour_idle, "2026-11-21T00:31:10")
    await sweep_tenant(hour_idle, "acme")
    assert "user|u1|d20261120" not in await usd_rows(hour_idle)


async def test_a_lifetime_user_budget_starts_afresh_after_the_idle_time(hour_idle: Store) -> None:
    await spend(hour_idle, "a", 500, LIFETIME_USER)
    assert not (await hour_idle.ledger.reserve(ask("b", (LIFETIME_USER,), 1))).allowed
    await at(hour_idle, "2026-11-20T13:00:50")  # noon + the call's minute + an hour is 13:01
    await sweep_tenant(hour_idle, "acme")
    assert "user|u1|-" in await usd_rows(hour_idle)
    await at(hour_idle, "2026-11-20T13:01:10")
    await sweep_tenant(hour_idle, "acme")
    assert "user|u1|-" not in await usd_rows(hour_idle)
    assert (await hour_idle.ledger.reserve(ask("c", (LIFETIME_USER,), 500))).allowed


async def test_no_user_entry_outlives_its_period_by_more_than_the_grace(store_url: str) -> None:
    settings = ReservationSettings(user_idle_ms=30 * 24 * HOUR, period_grace_ms=24 * HOUR)
    stores = open_store(store_url, settings)
    try:
        await create(stores)
        await at(stores, "2026-11-20T12:00:00")
        await spend(stores, "a", 200, DAY_USER)
        await at(stores, "2026-11-22T00:00:01")  # the day's end + a day of grace, not 30 days
        await sweep_tenant(stores, "acme")
        assert await usd_rows(stores) == {}
    finally:
        await stores.close()


async def test_a_thousand_idle_users_leave_nothing_behind(hour_idle: Store) -> None:
    for i in range(1000):
        user = BudgetLine("user", f"u{i}", "USD", "day", 500)
        await spend(hour_idle, f"r{i}", 1, user)
    assert await ledger_entries(hour_idle) == (2 * 1000 + 2, 1001)  # spent, reserved
    await at(hour_idle, "2026-11-21T00:00:01")
    await sweep_tenant(hour_idle, "acme")
    # The tenant's day line (spent and reserved) and its expiry stay for their grace.
    assert await ledger_entries(hour_idle) == (2, 1)


async def ledger_entries(store: Store) -> tuple[int, int]:
    """(fields of acme's ledger, entries of its expiry index): what the store holds for it."""
    ledger = store.ledger
    if isinstance(ledger, MemoryLedger):
        t = ledger.state.tenant("acme")
        return len(t.ledger) + len(t.counters.values), len(t.ledger_exp)
    assert isinstance(ledger, RedisLedger)
    keys = layout.tenant_keys("acme")
    client = ledger.scripts.client
    fields = int(await client.hlen(keys[0])) + int(await client.hlen(layout.users_key("acme")))
    return fields, int(await client.zcard(keys[1]))
