"""Time-travel tests on the memory store (its clock is injectable; Redis TIME is not).

The Redis scripts run the same period arithmetic (test_ledger_redis checks it against
proxy.ledger.common) and the contract suite checks both stores behave alike at "now".
"""

from __future__ import annotations

from datetime import UTC, datetime

from proxy.ledger import MemoryLedger
from proxy.ledger.base import BudgetLine, Ledger, ReserveRequest
from proxy.policy.runtime import ReservationSettings

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
    return ReserveRequest("acme", rid, lines, [{"USD": usd}])


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
        ("m202612", 900),
        ("d20261201", 900),
    ]
    assert await rows(ledger) == {
        "tenant|m202611": (300, 0),
        "agent|d20261130": (300, 0),
        "tenant|m202612": (0, 100),
        "agent|d20261201": (0, 100),
    }


async def test_period_entries_are_kept_until_period_end_plus_grace() -> None:
    clock = Clock("2026-12-31T12:00:00")
    ledger = MemoryLedger(ReservationSettings(period_grace_ms=DAY), clock=clock)
    held = (await ledger.reserve(ask("a", MONTHLY))).reservation
    assert held is not None
    await ledger.commit(held, {"USD": 100})
    clock.now = ms("2027-01-02T00:00:00") - 1
    await ledger.sweep("acme")
    assert await rows(ledger) == {"tenant|m202612": (100, 0)}
    clock.now += 1
    await ledger.sweep("acme")
    assert await rows(ledger) == {}


async def test_run_entry_idle_ttl_restarts_on_every_write() -> None:
    clock = Clock("2026-11-23T10:00:00")
    ledger = MemoryLedger(ReservationSettings(run_idle_ms=HOUR), clock=clock)
    held = (await ledger.reserve(ask("a", RUN))).reservation
    assert held is not None
    clock.now += 50 * 60_000
    await ledger.commit(held, {"USD": 70})
    clock.now += 50 * 60_000
    await ledger.sweep("acme")
    assert await rows(ledger) == {"run|-": (70, 0)}
    clock.now += 10 * 60_000
    await ledger.sweep("acme")
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
    assert await rows(ledger) == {"tenant|m202611": (100, 0)}
    clock.now += HOUR - 1
    await ledger.sweep("acme")
    assert (await ledger.commit(held, {"USD": 60})).charged == {"USD": -40}
    assert await rows(ledger) == {"tenant|m202611": (60, 0)}


async def test_reserve_cleans_up_at_most_eight_expired_entries() -> None:
    clock = Clock("2026-11-23T10:00:00")
    ledger = MemoryLedger(ReservationSettings(run_idle_ms=HOUR), clock=clock)
    for i in range(10):
        run = BudgetLine("run", f"r{i}", "USD", "none", 1000)
        held = (await ledger.reserve(ask(f"a{i}", run))).reservation
        assert held is not None
        await ledger.release(held)
    clock.now += HOUR
    await ledger.reserve(ask("b", MONTHLY))
    assert len(await ledger.balances("acme")) == 3
    await ledger.sweep("acme")
    assert await rows(ledger) == {"tenant|m202611": (0, 100)}
