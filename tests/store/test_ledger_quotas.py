# The ledger fixture is imported from ledger_support (on conftest's `opener`: every store);
# tests take it as an argument, which pyflakes reads as redefining the import.
# ruff: noqa: F811
"""The contract, continued: quotas counted in the same atomic reserve, on every store.

Rates are checked at their boundaries here (Redis time cannot be moved); refilling over time is
checked on the memory store's injected clock in test_ledger_memory.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from conftest import EVERY_STORE, Opener
from hooks_support import quota_counters, set_status, sweep_tenant
from ledger_support import (  # noqa: F401
    EXPIRE_NOW,
    ask,
    book,
    ledger,
    line,
)
from support import dated

from proxy.core.types import ReservationSettings
from proxy.store.ledger.base import Candidate, Condition, Ledger, Quotas, Reservation, ReserveResult

pytestmark = EVERY_STORE

CONC = "q|conc|tenant|acme"


DAY = "d%Y%m%d"


def runs_day(counters: dict[str, int | str], before: datetime) -> str:
    """The day the store dated its runs-per-day counter: one of the UTC days since `before`."""
    [day] = [name.removeprefix("q|runs|") for name in counters if name.startswith("q|runs|")]
    assert day in dated(before, DAY)
    return day


def ms_to_midnight(now: datetime) -> int:
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    return int((midnight - now).total_seconds() * 1000)


def concurrent(limit: int, *more: tuple[str, str, int]) -> Quotas:
    return Quotas(concurrent=[("tenant", "acme", limit), *more])


async def call(
    ledger: Ledger,
    rid: str,
    quotas: Quotas,
    run: str | None = None,
    tokens: int = 10,
    shadow: bool = False,
) -> ReserveResult:
    lines = [line(limit=10**9)]
    amounts = {"USD": 1, "TOKENS": tokens}
    return await ledger.reserve(ask(rid, lines, amounts, run=run, quotas=quotas, shadow=shadow))


def held(result: ReserveResult) -> Reservation:
    assert result.allowed and result.reservation is not None
    return result.reservation


def refused(result: ReserveResult, quota: str) -> None:
    assert (result.allowed, result.would_allow, result.candidate) == (False, False, -1)
    assert (result.quota, result.reservation) == (quota, None)


# --- concurrency -----------------------------------------------------------------------------


async def test_concurrency_admits_the_limit_then_refuses_and_counts_nothing(
    ledger: Ledger,
) -> None:
    q = concurrent(3)
    for i in range(3):
        assert held(await call(ledger, f"a{i}", q)).held == (CONC,)
    fourth = await call(ledger, "a3", q)
    refused(fourth, "concurrent_requests tenant")
    assert fourth.retry_after_ms == 1000
    assert await quota_counters(ledger, "acme") == {CONC: 3}
    assert await book(ledger) == {"tenant|acme|USD": (0, 3)}


async def test_each_concurrency_scope_is_counted_and_named(ledger: Ledger) -> None:
    def q(agent: str) -> Quotas:
        return concurrent(5, ("agent", agent, 2))

    for i in range(2):
        await call(ledger, f"bot{i}", q("bot"))
    refused(await call(ledger, "bot2", q("bot")), "concurrent_requests agent")
    assert held(await call(ledger, "other", q("other"))).held == (CONC, "q|conc|agent|other")
    assert await quota_counters(ledger, "acme") == {
        CONC: 3,
        "q|conc|agent|bot": 2,
        "q|conc|agent|other": 1,
    }


async def test_concurrency_is_freed_by_commit_release_and_expiry_once_each(
    opener: Opener,
) -> None:
    ledger, q = opener.open(EXPIRE_NOW).ledger, concurrent(3)
    a, b = held(await call(ledger, "a", q)), held(await call(ledger, "b", q))
    held(await call(ledger, "c", q))
    refused(await call(ledger, "d", q), "concurrent_requests tenant")
    await ledger.commit(a, {"USD": 1})
    await ledger.commit(a, {"USD": 1})
    await ledger.release(a)
    assert await quota_counters(ledger, "acme") == {CONC: 2}
    await ledger.release(b)
    await ledger.release(b)
    await ledger.commit(b, {"USD": 1})
    assert await quota_counters(ledger, "acme") == {CONC: 1}
    assert await sweep_tenant(ledger, "acme") == 1
    assert await quota_counters(ledger, "acme") == {}
    assert held(await call(ledger, "e", q)).held == (CONC,)


async def test_settling_a_lost_record_frees_no_slot_another_call_holds(ledger: Ledger) -> None:
    """A record the store no longer has held its slot until its expiry (or lost it with the
    store): what is counted now is other calls' (common.lua missing_record)."""
    real = held(await call(ledger, "a", concurrent(5)))
    ghost = Reservation("acme", "lost", real.fields, {"USD": 1}, real.held)
    assert (await ledger.release(ghost)).first
    assert await quota_counters(ledger, "acme") == {CONC: 1}
    other = Reservation("acme", "lost2", real.fields, {"USD": 1}, real.held)
    assert (await ledger.commit(other, {"USD": 1})).first
    assert await quota_counters(ledger, "acme") == {CONC: 1}
    assert not (await ledger.commit(other, {"USD": 1})).first
    assert (await ledger.release(real)).first
    assert await quota_counters(ledger, "acme") == {}


async def test_fifty_concurrent_reserves_against_a_limit_of_five(ledger: Ledger) -> None:
    results = await asyncio.gather(*(call(ledger, f"r{i}", concurrent(5)) for i in range(50)))
    assert sum(r.allowed for r in results) == 5
    assert {r.quota for r in results if not r.allowed} == {"concurrent_requests tenant"}
    assert await quota_counters(ledger, "acme") == {CONC: 5}
    assert await book(ledger) == {"tenant|acme|USD": (0, 5)}


async def test_concurrency_never_exceeds_its_limit_while_calls_come_and_go(
    ledger: Ledger,
) -> None:
    seen: list[int] = []

    async def worker(i: int) -> int:
        admitted = 0
        for attempt in range(4):
            result = await call(ledger, f"w{i}-{attempt}", concurrent(5))
            seen.append(int((await quota_counters(ledger, "acme")).get(CONC, 0)))
            if result.reservation is not None:
                admitted += 1
                await asyncio.sleep(0)
                await ledger.release(result.reservation)
        return admitted

    admitted = await asyncio.gather(*(worker(i) for i in range(50)))
    assert sum(admitted) >= 5 and max(seen) <= 5
    assert await quota_counters(ledger, "acme") == {}


# --- runs per day and steps per run ----------------------------------------------------------


async def test_runs_per_day_counts_each_run_once_and_refuses_the_next_new_run(
    ledger: Ledger,
) -> None:
    q = Quotas(runs_per_day=2)
    before = datetime.now(UTC)
    for rid, run in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        held(await call(ledger, rid, q, run=run))
    third = await call(ledger, "c1", q, run="c")
    refused(third, "runs_per_day")
    waits = {ms_to_midnight(before), ms_to_midnight(datetime.now(UTC))}
    assert any(abs(third.retry_after_ms - wait) < 5000 for wait in waits), (third, waits)
    held(await call(ledger, "a3", q, run="a"))
    held(await call(ledger, "no-run", q))
    counters = await quota_counters(ledger, "acme")
    day = runs_day(counters, before)
    assert counters == {f"q|runs|{day}": 2, "q|run|a|day": day, "q|run|b|day": day}


async def test_two_hundred_new_runs_at_once_admit_exactly_the_daily_quota(ledger: Ledger) -> None:
    q = Quotas(runs_per_day=20)
    before = datetime.now(UTC)
    results = await asyncio.gather(*(call(ledger, f"r{i}", q, run=f"run{i}") for i in range(200)))
    assert sum(r.allowed for r in results) == 20
    counters = await quota_counters(ledger, "acme")
    assert counters[f"q|runs|{runs_day(counters, before)}"] == 20
    assert sum(name.endswith("|day") for name in counters) == 20


async def test_steps_per_run_admits_the_limit_per_run(ledger: Ledger) -> None:
    q = Quotas(steps_per_run=2)
    for i in range(2):
        held(await call(ledger, f"a{i}", q, run="a"))
    third = await call(ledger, "a2", q, run="a")
    refused(third, "steps_per_run")
    assert third.retry_after_ms == 0
    held(await call(ledger, "b0", q, run="b"))
    assert await quota_counters(ledger, "acme") == {"q|run|a|steps": 2, "q|run|b|steps": 1}


async def test_a_quota_denial_counts_nothing_on_the_quotas_before_it(ledger: Ledger) -> None:
    q = Quotas(concurrent=[("tenant", "acme", 10)], runs_per_day=5, steps_per_run=1)
    held(await call(ledger, "a", q, run="a"))
    before = await quota_counters(ledger, "acme")
    refused(await call(ledger, "b", q, run="a"), "steps_per_run")
    assert await quota_counters(ledger, "acme") == before
    assert await book(ledger) == {"tenant|acme|USD": (0, 1)}


async def test_run_counters_expire_after_the_idle_ttl(opener: Opener) -> None:
    ledger = opener.open(ReservationSettings(run_idle_ms=0, cap_ms=0)).ledger
    q = Quotas(runs_per_day=5, steps_per_run=5)
    before = datetime.now(UTC)
    await ledger.release(held(await call(ledger, "a", q, run="a")))
    await asyncio.sleep(0.002)
    await sweep_tenant(ledger, "acme")
    counters = await quota_counters(ledger, "acme")
    day = runs_day(counters, before)
    assert counters == {f"q|runs|{day}": 1}
    held(await call(ledger, "b", q, run="a"))
    assert (await quota_counters(ledger, "acme"))[f"q|runs|{day}"] == 2


# --- rates -----------------------------------------------------------------------------------


async def test_requests_per_minute_admits_a_minute_burst_then_refuses(ledger: Ledger) -> None:
    q = Quotas(requests_per_minute=3)
    for i in range(3):
        held(await call(ledger, f"a{i}", q))
    fourth = await call(ledger, "a3", q)
    refused(fourth, "requests_per_minute")
    assert 19_000 < fourth.retry_after_ms <= 20_000
    assert set(await quota_counters(ledger, "acme")) == {"q|rpm|tat"}


async def test_tokens_per_minute_admits_up_to_the_limit_exactly(ledger: Ledger) -> None:
    q = Quotas(tokens_per_minute=1000)
    held(await call(ledger, "a", q, tokens=600))
    held(await call(ledger, "b", q, tokens=400))
    one_more = await call(ledger, "c", q, tokens=5)
    refused(one_more, "tokens_per_minute")
    assert 0 < one_more.retry_after_ms <= 300
    heavy = await call(ledger, "d", q, tokens=500)
    assert 29_900 < heavy.retry_after_ms <= 30_000


async def test_tokens_per_minute_counts_the_chosen_candidate(ledger: Ledger) -> None:
    q = Quotas(tokens_per_minute=1000)
    lines = [line(limit=100)]
    smaller = Candidate({"USD": 50, "TOKENS": 900}, Condition("not_fit"))
    result = await ledger.reserve(ask("a", lines, {"USD": 500, "TOKENS": 5000}, smaller, quotas=q))
    assert (result.candidate, result.allowed) == (1, True)
    again = await ledger.reserve(ask("b", lines, {"USD": 500, "TOKENS": 5000}, smaller, quotas=q))
    refused(again, "tokens_per_minute")
    assert await book(ledger) == {"tenant|acme|USD": (0, 50)}


async def test_a_token_rate_denial_counts_nothing(ledger: Ledger) -> None:
    q = Quotas(concurrent=[("tenant", "acme", 5)], requests_per_minute=10, tokens_per_minute=100)
    held(await call(ledger, "a", q, tokens=100))
    before = await quota_counters(ledger, "acme")
    refused(await call(ledger, "b", q, tokens=1), "tokens_per_minute")
    assert await quota_counters(ledger, "acme") == before


# --- shadow, status, repeats ------------------------------------------------------------------


async def test_shadow_admits_and_counts_but_names_the_quota_that_would_deny(
    ledger: Ledger,
) -> None:
    q = Quotas(concurrent=[("tenant", "acme", 1)], steps_per_run=1, requests_per_minute=1)
    held(await call(ledger, "a", q, run="a", shadow=True))
    tat = (await quota_counters(ledger, "acme"))["q|rpm|tat"]
    second = await call(ledger, "b", q, run="a", shadow=True)
    assert (second.allowed, second.would_allow, second.candidate) == (True, False, 0)
    assert second.quota == "concurrent_requests tenant" and second.retry_after_ms == 1000
    assert second.reservation is not None and second.reservation.held == (CONC,)
    counters = await quota_counters(ledger, "acme")
    assert (counters[CONC], counters["q|run|a|steps"]) == (2, 2)
    assert counters["q|rpm|tat"] == tat  # a rate that would deny is not advanced
    await ledger.release(second.reservation)
    assert (await quota_counters(ledger, "acme"))[CONC] == 1


async def test_shadow_reports_a_token_rate_it_would_deny(ledger: Ledger) -> None:
    q = Quotas(tokens_per_minute=100)
    first = await call(ledger, "a", q, tokens=100, shadow=True)
    assert (first.would_allow, first.quota) == (True, None)
    second = await call(ledger, "b", q, tokens=100, shadow=True)
    assert (second.allowed, second.would_allow, second.quota) == (True, False, "tokens_per_minute")
    assert second.retry_after_ms > 59_000
    assert await book(ledger) == {"tenant|acme|USD": (0, 2)}


async def test_inactive_tenant_counts_nothing_even_in_shadow(ledger: Ledger) -> None:
    await set_status(ledger, "acme", "suspended")
    q = Quotas(concurrent=[("tenant", "acme", 5)], runs_per_day=5, requests_per_minute=5)
    for shadow in (False, True):
        result = await call(ledger, f"a{shadow}", q, run="r", shadow=shadow)
        assert (result.allowed, result.quota, result.status) == (False, None, "suspended")
    assert await quota_counters(ledger, "acme") == {}


async def test_repeated_reserve_is_counted_once(ledger: Ledger) -> None:
    q = Quotas(concurrent=[("tenant", "acme", 5)], runs_per_day=5, steps_per_run=5)
    before = datetime.now(UTC)
    first = await call(ledger, "a", q, run="r")
    again = await call(ledger, "a", q, run="r")
    assert again.reservation == first.reservation
    counters = await quota_counters(ledger, "acme")
    day = runs_day(counters, before)
    assert counters == {CONC: 1, f"q|runs|{day}": 1, "q|run|r|day": day, "q|run|r|steps": 1}


async def test_balances_show_budgets_and_counters_show_quotas(ledger: Ledger) -> None:
    q = Quotas(concurrent=[("tenant", "acme", 5)], steps_per_run=5, tokens_per_minute=10**6)
    await call(ledger, "a", q, run="r")
    assert [(r.level, r.reserved) for r in await ledger.balances("acme")] == [("tenant", 1)]
    assert set(await quota_counters(ledger, "acme")) == {CONC, "q|run|r|steps", "q|tpm|tat"}
