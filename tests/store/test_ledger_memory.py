"""Time-travel tests on the memory store (its clock is injectable; Redis TIME is not).

Quotas over time (rates refilling, runs per day rolling over at midnight, counters expiring) are
tested here only: the Redis scripts take time from TIME and run the same arithmetic, which the
contract suite checks at its boundaries.

The Redis scripts run the same period arithmetic (test_ledger_redis checks it against
proxy.store.ledger.common) and the contract suite checks both stores behave alike at "now".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hooks_support import quota_counters, sweep_tenant

from proxy.core.types import ReservationSettings
from proxy.store.ledger import MemoryLedger
from proxy.store.ledger.base import BudgetLine, Candidate, Ledger, Quotas, ReserveRequest

HOUR = 3_600_000
DAY = 24 * HOUR


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


class Clock:
    def __init__(self, start: str) -> None:
        self.now = ms(start)

    def __call__(self) -> int:
        return self.now


def ask(rid: str, *lines: BudgetLine, usd: int = 100) -> ReserveRequest:
    return ReserveRequest("acme", rid, lines, [Candidate({"USD": usd})])


MONTHLY = BudgetLine("tenant", "acme", "USD", "month", 1000)
DAILY = BudgetLine("agent", "bot", "USD", "day", 1000)
RUN = BudgetLine("run", "r1", "USD", "none", 1000)


async def rows(ledger: Ledger) -> dict[str, tuple[int, int]]:
    return {
        f"{r.level}|{r.period_id}": (r.spent, r.reserved) for r in await ledger.balances("acme")
    }


async def test_commit_after_month_end_charges_the_reserving_month() -> None:
    clock = Clock("2026-11-30T23:59:59.999")
    ledger = MemoryLedger(ReservationSettings(), clock=clock)
    held = (await ledger.reserve(ask("a", MONTHLY, DAILY))).reservation
    assert held is not None
    clock.now += 1
    await ledger.commit(held, {"USD": 300})
    fresh = await ledger.reserve(ask("b", MONTHLY, DAILY))
    assert [(s.period_id, s.remaining) for s in fresh.lines] == [
        ("m20261201", 900),
        ("d20261201", 900),
    ]
    assert await rows(ledger) == {
        "tenant|m20261101": (300, 0),
        "agent|d20261130": (300, 0),
        "tenant|m20261201": (0, 100),
        "agent|d20261201": (0, 100),
    }


async def test_period_entries_are_kept_until_period_end_plus_grace() -> None:
    clock = Clock("2026-12-31T12:00:00")
    ledger = MemoryLedger(ReservationSettings(period_grace_ms=DAY), clock=clock)
    held = (await ledger.reserve(ask("a", MONTHLY))).reservation
    assert held is not None
    await ledger.commit(held, {"USD": 100})
    clock.now = ms("2027-01-02T00:00:00") - 1
    await sweep_tenant(ledger, "acme")
    assert await rows(ledger) == {"tenant|m20261201": (100, 0)}
    clock.now += 1
    await sweep_tenant(ledger, "acme")
    assert await rows(ledger) == {}


async def test_run_entry_idle_ttl_restarts_on_every_write() -> None:
    clock = Clock("2026-11-23T10:00:00")
    ledger = MemoryLedger(ReservationSettings(run_idle_ms=HOUR), clock=clock)
    held = (await ledger.reserve(ask("a", RUN))).reservation
    assert held is not None
    clock.now += 50 * 60_000
    await ledger.commit(held, {"USD": 70})
    clock.now += 50 * 60_000
    await sweep_tenant(ledger, "acme")
    assert await rows(ledger) == {"run|-": (70, 0)}
    clock.now += 10 * 60_000
    await sweep_tenant(ledger, "acme")
    assert await rows(ledger) == {}


async def test_open_reservation_expires_exactly_at_its_cap() -> None:
    clock = Clock("2026-11-23T10:00:00")
    ledger = MemoryLedger(ReservationSettings(cap_ms=HOUR, tombstone_ms=HOUR), clock=clock)
    held = (await ledger.reserve(ask("a", MONTHLY))).reservation
    assert held is not None
    clock.now += HOUR - 1
    assert await ledger.sweep_all() == 0
    clock.now += 1
    assert await ledger.sweep_all() == 1
    assert await rows(ledger) == {"tenant|m20261101": (100, 0)}
    clock.now += HOUR - 1
    await sweep_tenant(ledger, "acme")
    assert (await ledger.commit(held, {"USD": 60})).charged == {"USD": -40}
    assert await rows(ledger) == {"tenant|m20261101": (60, 0)}


async def test_reserve_cleans_up_at_most_eight_expired_entries() -> None:
    clock = Clock("2026-11-23T10:00:00")
    ledger = MemoryLedger(ReservationSettings(run_idle_ms=HOUR, cap_ms=1), clock=clock)
    for i in range(10):
        run = BudgetLine("run", f"r{i}", "USD", "none", 1000)
        held = (await ledger.reserve(ask(f"a{i}", run))).reservation
        assert held is not None
        await ledger.release(held)
    clock.now += HOUR + 1  # the idle TTL counts from when the call could no longer be open
    await ledger.reserve(ask("b", MONTHLY))
    assert len(await ledger.balances("acme")) == 3
    await sweep_tenant(ledger, "acme")
    assert await rows(ledger) == {"tenant|m20261101": (0, 100)}


# --- quotas over time ------------------------------------------------------------------------


def call(rid: str, quotas: Quotas, run: str | None = None, tokens: int = 1) -> ReserveRequest:
    amounts = {"USD": 1, "TOKENS": tokens}
    return ReserveRequest("acme", rid, [MONTHLY], [Candidate(amounts)], run=run, quotas=quotas)


async def test_request_rate_refills_one_interval_at_a_time() -> None:
    clock = Clock("2026-11-23T10:00:00")
    ledger = MemoryLedger(ReservationSettings(), clock=clock)
    q = Quotas(requests_per_minute=2)
    assert (await ledger.reserve(call("a", q))).allowed
    assert (await ledger.reserve(call("b", q))).allowed
    third = await ledger.reserve(call("c", q))
    assert (third.allowed, third.quota, third.retry_after_ms) == (
        False,
        "requests_per_minute",
        30_000,
    )
    clock.now += 29_999
    assert (await ledger.reserve(call("d", q))).retry_after_ms == 1
    clock.now += 1
    assert (await ledger.reserve(call("e", q))).allowed
    assert not (await ledger.reserve(call("f", q))).allowed
    clock.now += 60_000
    assert (await ledger.reserve(call("g", q))).allowed
    assert (await ledger.reserve(call("h", q))).allowed


async def test_token_rate_refills_in_proportion_to_the_tokens() -> None:
    clock = Clock("2026-11-23T10:00:00")
    ledger = MemoryLedger(ReservationSettings(), clock=clock)
    q = Quotas(tokens_per_minute=6000)  # 10 ms a token
    assert (await ledger.reserve(call("a", q, tokens=6000))).allowed
    denied = await ledger.reserve(call("b", q, tokens=300))
    assert (denied.quota, denied.retry_after_ms) == ("tokens_per_minute", 3000)
    clock.now += 3000
    assert (await ledger.reserve(call("c", q, tokens=300))).allowed
    assert (await ledger.reserve(call("d", q, tokens=1))).retry_after_ms == 10


async def test_rate_fields_are_dropped_two_minutes_after_the_last_call() -> None:
    clock = Clock("2026-11-23T10:00:00")
    ledger = MemoryLedger(ReservationSettings(), clock=clock)
    await ledger.reserve(call("a", Quotas(requests_per_minute=10, tokens_per_minute=10)))
    clock.now += 120_000 - 1
    await sweep_tenant(ledger, "acme")
    assert set(await quota_counters(ledger, "acme")) == {"q|rpm|tat", "q|tpm|tat"}
    clock.now += 1
    await sweep_tenant(ledger, "acme")
    assert await quota_counters(ledger, "acme") == {}


async def test_runs_per_day_frees_at_utc_midnight_and_the_day_counter_expires() -> None:
    clock = Clock("2026-11-23T23:59:00")
    ledger = MemoryLedger(ReservationSettings(period_grace_ms=HOUR), clock=clock)
    q = Quotas(runs_per_day=1)
    assert (await ledger.reserve(call("a", q, run="r1"))).allowed
    refused = await ledger.reserve(call("b", q, run="r2"))
    assert (refused.quota, refused.retry_after_ms) == ("runs_per_day", 60_000)
    clock.now += 60_000
    assert (await ledger.reserve(call("c", q, run="r2"))).allowed
    assert (await ledger.reserve(call("d", q, run="r1"))).allowed  # counted on the 23rd
    assert await quota_counters(ledger, "acme") == {
        "q|runs|d20261123": 1,
        "q|runs|d20261124": 1,
        "q|run|r1|day": "d20261123",
        "q|run|r2|day": "d20261124",
    }
    clock.now = ms("2026-11-24T01:00:00")
    await sweep_tenant(ledger, "acme")
    assert "q|runs|d20261123" not in await quota_counters(ledger, "acme")


async def test_concurrency_counters_never_expire_while_held() -> None:
    clock = Clock("2026-11-23T10:00:00")
    ledger = MemoryLedger(ReservationSettings(cap_ms=DAY * 30), clock=clock)
    held = (await ledger.reserve(call("a", Quotas(concurrent=[("tenant", "acme", 1)])))).reservation
    assert held is not None
    clock.now += 20 * DAY
    await sweep_tenant(ledger, "acme")
    assert await quota_counters(ledger, "acme") == {"q|conc|tenant|acme": 1}
    await ledger.release(held)
    assert await quota_counters(ledger, "acme") == {}


def test_the_memory_store_keeps_the_newest_audit_entries_up_to_its_cap() -> None:
    """The embedded store lives in the proxy's memory: its audit trail is bounded per tenant
    (the Redis store keeps the whole retention, in Redis)."""
    from proxy.store.ledger.memory_state import AUDIT_MAX_ENTRIES, TenantState

    t = TenantState()
    for i in range(AUDIT_MAX_ENTRIES + 50):
        t.append("admin", {"n": str(i)}, 1_000 + i, 10**12)
    assert len(t.audit) == AUDIT_MAX_ENTRIES
    assert t.audit[0][1]["n"] == "50" and t.audit[-1][1]["n"] == str(AUDIT_MAX_ENTRIES + 49)


async def test_the_memory_store_keeps_the_newest_settled_records_up_to_its_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Settled records are kept for tombstone_seconds, but at most TOMBSTONES_MAX in the store:
    the embedded store's memory stays flat under any traffic. Open reservations are never
    dropped."""
    from proxy.store.ledger import memory

    monkeypatch.setattr(memory, "TOMBSTONES_MAX", 50)
    ledger = MemoryLedger(ReservationSettings())
    line = BudgetLine("tenant", "acme", "USD", "month", 10**12)
    held = []
    for i in range(200):
        result = await ledger.reserve(
            ReserveRequest("acme", f"r{i}", [line], [Candidate({"USD": 1})])
        )
        assert result.reservation is not None
        held.append(result.reservation)
    for reservation in held[:150]:
        await ledger.commit(reservation, {"USD": 1})
    state = ledger._tenants["acme"]
    assert len(state.resv) == 50 + 50  # the newest 50 settled, and the 50 still open
    assert all(state.resv[r.id].state == "OPEN" for r in held[150:])
    rows = await ledger.balances("acme")
    assert [(r.spent, r.reserved) for r in rows] == [(150, 50)]


class _Records(dict[str, object]):
    """A tenant's records that count the walks over all of them."""

    walks = 0

    def items(self) -> Any:
        _Records.walks += 1
        return super().items()


async def test_a_sweep_with_no_dead_owner_walks_no_record() -> None:
    """A tenant keeps thousands of settled records (tombstones): a sweep pass takes what is
    due from the expiry heap, and walks them only to reclaim a dead owner's open calls."""
    clock = Clock("2026-11-23T10:00:00")
    ledger = MemoryLedger(ReservationSettings(cap_ms=HOUR), clock=clock)
    for i in range(3):
        held = (await ledger.reserve(ask(f"a{i}", MONTHLY))).reservation
        assert held is not None
        await ledger.commit(held, {"USD": 10})
    assert (await ledger.reserve(ask("open", MONTHLY))).reservation is not None
    state = ledger._tenants["acme"]
    state.resv = _Records(state.resv)  # type: ignore[assignment]
    await sweep_tenant(ledger, "acme")
    clock.now += HOUR
    assert await sweep_tenant(ledger, "acme") == 1  # the open call, past its cap
    assert _Records.walks == 0
    assert await sweep_tenant(ledger, "acme", dead_owners=["gone"]) == 0
    assert _Records.walks == 1
    assert await rows(ledger) == {"tenant|m20261101": (130, 0)}
