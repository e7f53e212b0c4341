# The ledger fixture is imported from ledger_support (on conftest's `opener`: every store);
# tests take it as an argument, which pyflakes reads as redefining the import.
# ruff: noqa: F811
"""One contract for every ledger store: each test runs against `memory://`, a real Redis and a
real three-master Redis Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import EVERY_STORE, Opener
from hooks_support import set_status, sweep_tenant
from ledger_support import (  # noqa: F401
    EXPIRE_NOW,
    add_credit,
    ask,
    book,
    ledger,
    line,
    resv_entries,
)
from support import dated

from proxy.core.errors import AmountOutOfRange
from proxy.core.types import ReservationSettings
from proxy.store.ledger.base import BudgetLine, Candidate, Condition, Ledger, Reservation

pytestmark = EVERY_STORE

BIG = 2**52 - 1


MONTH = "m%Y%m01"


async def reserved(
    ledger: Ledger, rid: str, lines: list[BudgetLine], amounts: Mapping[str, int]
) -> Reservation:
    result = await ledger.reserve(ask(rid, lines, amounts))
    assert result.reservation is not None
    return result.reservation


# --- reserve ---------------------------------------------------------------------------------


async def test_reserve_holds_estimate_on_every_line(ledger: Ledger) -> None:
    lines = [line(limit=1000), line("run", "r1", limit=500, period="none")]
    before = datetime.now(UTC)
    result = await ledger.reserve(ask("a", lines, {"USD": 300}))
    month = result.lines[0].period_id
    assert month in dated(before, MONTH)
    assert (result.allowed, result.would_allow, result.candidate, result.denied_by) == (
        True,
        True,
        0,
        None,
    )
    assert [s.remaining for s in result.lines] == [700, 200]
    assert [s.period_id for s in result.lines] == [month, "-"]
    assert result.reservation is not None
    assert result.reservation.fields == (f"tenant|acme|USD|{month}", "run|r1|USD|-")
    assert await book(ledger) == {"tenant|acme|USD": (0, 300), "run|r1|USD": (0, 300)}


async def test_denied_when_any_line_is_short_and_nothing_is_written(ledger: Ledger) -> None:
    lines = [line(limit=1000), line("workflow", "triage", limit=50)]
    result = await ledger.reserve(ask("a", lines, {"USD": 100}))
    assert (result.allowed, result.would_allow, result.candidate, result.denied_by) == (
        False,
        False,
        -1,
        1,
    )
    assert result.reservation is None
    assert [s.remaining for s in result.lines] == [1000, 50]
    assert await ledger.balances("acme") == []


async def test_first_candidate_that_fits_is_reserved(ledger: Ledger) -> None:
    lines = [line(limit=150)]
    result = await ledger.reserve(ask("a", lines, {"USD": 400}, {"USD": 200}, {"USD": 120}))
    assert (result.allowed, result.would_allow, result.candidate, result.denied_by) == (
        True,
        True,
        2,
        0,
    )
    assert result.reservation is not None and result.reservation.amounts == {"USD": 120}
    assert await book(ledger) == {"tenant|acme|USD": (0, 120)}


async def test_exact_fit_is_allowed_and_one_more_unit_is_not(ledger: Ledger) -> None:
    assert (await ledger.reserve(ask("a", [line(limit=100)], {"USD": 100}))).allowed
    assert not (await ledger.reserve(ask("b", [line(limit=100)], {"USD": 1}))).allowed


async def test_shadow_reserves_first_candidate_when_nothing_fits(ledger: Ledger) -> None:
    result = await ledger.reserve(ask("a", [line(limit=50)], {"USD": 80}, {"USD": 60}, shadow=True))
    assert (result.allowed, result.would_allow, result.candidate, result.denied_by) == (
        True,
        False,
        0,
        0,
    )
    assert result.lines[0].remaining == -30
    assert await book(ledger) == {"tenant|acme|USD": (0, 80)}


async def test_shadow_reports_the_fitting_candidate_but_reserves_the_call_as_asked(
    ledger: Ledger,
) -> None:
    result = await ledger.reserve(ask("a", [line(limit=50)], {"USD": 80}, {"USD": 40}, shadow=True))
    assert (result.allowed, result.would_allow, result.candidate, result.denied_by) == (
        True,
        True,
        1,
        0,
    )
    assert result.reservation is not None and result.reservation.amounts == {"USD": 80}
    assert await book(ledger) == {"tenant|acme|USD": (0, 80)}


@pytest.mark.parametrize("status", ["suspended", "closed"])
async def test_inactive_tenant_is_refused_even_in_shadow(ledger: Ledger, status: Any) -> None:
    await set_status(ledger, "acme", status)
    for shadow in (False, True):
        result = await ledger.reserve(ask(f"a{shadow}", [line()], shadow=shadow))
        assert (result.allowed, result.would_allow, result.candidate) == (False, False, -1)
        assert result.status == status and result.reservation is None
    assert await ledger.balances("acme") == []
    await set_status(ledger, "acme", "active")
    assert (await ledger.reserve(ask("b", [line()]))).status == "active"


async def test_reservation_without_lines_is_recorded_and_settles(ledger: Ledger) -> None:
    result = await ledger.reserve(ask("a", [], {"TOKENS": 7}))
    assert result.allowed and result.reservation is not None
    assert (await ledger.commit(result.reservation, {"TOKENS": 5})).first
    assert not (await ledger.commit(result.reservation, {"TOKENS": 5})).first


async def test_same_reservation_id_is_not_reserved_twice(ledger: Ledger) -> None:
    smaller = Candidate({"USD": 300}, Condition("not_fit"))
    first = await ledger.reserve(ask("a", [line(limit=1000)], {"USD": 900}, smaller))
    again = await ledger.reserve(ask("a", [line(limit=1000)], {"USD": 900}, smaller))
    assert again.allowed and again.candidate == first.candidate == 0
    assert again.reservation == first.reservation
    assert await book(ledger) == {"tenant|acme|USD": (0, 900)}


async def test_remaining_counts_credit(ledger: Ledger) -> None:
    await add_credit(ledger, f"tenant|acme|USD|{datetime.now(UTC).strftime(MONTH)}", 500)
    result = await ledger.reserve(ask("a", [line(limit=100)], {"USD": 550}))
    assert result.allowed and result.lines[0].remaining == 50
    assert (await ledger.balances("acme"))[0].credit == 500


async def test_period_ids_follow_utc_now(ledger: Ledger) -> None:
    lines = [
        line(period="month"),
        line("agent", "bot", period="day"),
        line("run", "r1", period="none"),
    ]
    before = datetime.now(UTC)
    result = await ledger.reserve(ask("a", lines))
    month, day, run = (s.period_id for s in result.lines)
    assert f"{month} {day}" in dated(before, f"{MONTH} d%Y%m%d")
    assert run == "-"
    assert [s.field for s in result.lines] == list(result.reservation.fields)  # type: ignore[union-attr]


async def test_candidate_missing_a_line_unit_is_rejected(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="TOKENS"):
        await ledger.reserve(ask("a", [line(unit="TOKENS")], {"USD": 1}))


# --- amounts near 2**52 ----------------------------------------------------------------------


async def test_amounts_just_below_2_52_stay_exact(ledger: Ledger) -> None:
    lines = [line(limit=BIG), line("run", "r1", limit=BIG, unit="TOKENS", period="none")]
    result = await ledger.reserve(ask("a", lines, {"USD": BIG - 1, "TOKENS": BIG}))
    assert [s.remaining for s in result.lines] == [1, 0]
    assert result.reservation is not None
    assert result.reservation.amounts == {"USD": BIG - 1, "TOKENS": BIG}
    assert not (await ledger.reserve(ask("b", lines, {"USD": 1, "TOKENS": 1}))).allowed
    settled = await ledger.commit(result.reservation, {"USD": BIG, "TOKENS": BIG - 2})
    assert settled.charged == {"USD": BIG, "TOKENS": BIG - 2}
    assert await book(ledger) == {"tenant|acme|USD": (BIG, 0), "run|r1|TOKENS": (BIG - 2, 0)}


@pytest.mark.parametrize("bad", [2**52, 2**60, -1, 1.0, True])
async def test_out_of_range_amounts_are_refused_before_the_store(ledger: Ledger, bad: Any) -> None:
    with pytest.raises(AmountOutOfRange):
        await ledger.reserve(ask("a", [line()], {"USD": bad}))
    with pytest.raises(AmountOutOfRange):
        await ledger.reserve(ask("b", [line(limit=bad)], {"USD": 1}))
    ok = await reserved(ledger, "c", [line()], {"USD": 1})
    with pytest.raises(AmountOutOfRange):
        await ledger.commit(ok, {"USD": bad})
    assert await book(ledger) == {"tenant|acme|USD": (0, 1)}


# --- commit and release ----------------------------------------------------------------------


async def test_commit_charges_actual_even_above_estimate(ledger: Ledger) -> None:
    resv = await reserved(
        ledger, "a", [line(limit=1000), line("run", "r1", period="none")], {"USD": 100}
    )
    settled = await ledger.commit(resv, {"USD": 250})
    assert (settled.state, settled.first, settled.charged) == ("COMMITTED", True, {"USD": 250})
    assert await book(ledger) == {"tenant|acme|USD": (250, 0), "run|r1|USD": (250, 0)}
    assert (await ledger.reserve(ask("b", [line(limit=1000)]))).lines[0].remaining == 650


async def test_second_commit_returns_first_result(ledger: Ledger) -> None:
    resv = await reserved(ledger, "a", [line()], {"USD": 100})
    await ledger.commit(resv, {"USD": 80})
    again = await ledger.commit(resv, {"USD": 999})
    assert (again.state, again.first, again.charged) == ("COMMITTED", False, {"USD": 80})
    assert await book(ledger) == {"tenant|acme|USD": (80, 0)}


async def test_release_frees_without_charging(ledger: Ledger) -> None:
    resv = await reserved(ledger, "a", [line()], {"USD": 100})
    settled = await ledger.release(resv)
    assert (settled.state, settled.first, settled.charged) == ("RELEASED", True, {})
    again = await ledger.release(resv)
    assert (again.state, again.first) == ("RELEASED", False)
    assert await book(ledger) == {"tenant|acme|USD": (0, 0)}


async def test_commit_after_release_still_charges(ledger: Ledger) -> None:
    resv = await reserved(ledger, "a", [line()], {"USD": 100})
    await ledger.release(resv)
    settled = await ledger.commit(resv, {"USD": 40})
    assert (settled.state, settled.first, settled.charged) == ("COMMITTED", True, {"USD": 40})
    assert await book(ledger) == {"tenant|acme|USD": (40, 0)}


async def test_release_after_commit_changes_nothing(ledger: Ledger) -> None:
    resv = await reserved(ledger, "a", [line()], {"USD": 100})
    await ledger.commit(resv, {"USD": 60})
    settled = await ledger.release(resv)
    assert (settled.state, settled.first, settled.charged) == ("COMMITTED", False, {})
    assert await book(ledger) == {"tenant|acme|USD": (60, 0)}


async def test_commit_without_record_charges_its_actual_and_frees_nothing(ledger: Ledger) -> None:
    """A record the store no longer has: what it reserved was settled at its expiry or lost
    with the store, so the 100 still reserved is another call's and stays."""
    held = await reserved(ledger, "a", [line()], {"USD": 100})
    ghost = Reservation("acme", "lost", held.fields, {"USD": 300})
    settled = await ledger.commit(ghost, {"USD": 50})
    assert (settled.state, settled.first, settled.charged) == ("COMMITTED", True, {"USD": 50})
    assert await book(ledger) == {"tenant|acme|USD": (50, 100)}
    assert not (await ledger.commit(ghost, {"USD": 50})).first


async def test_release_without_record_frees_nothing_and_leaves_a_tombstone(
    ledger: Ledger,
) -> None:
    held = await reserved(ledger, "a", [line()], {"USD": 100})
    ghost = Reservation("acme", "lost", held.fields, {"USD": 30})
    settled = await ledger.release(ghost)
    assert (settled.state, settled.first) == ("RELEASED", True)
    assert await book(ledger) == {"tenant|acme|USD": (0, 100)}
    assert not (await ledger.release(ghost)).first
    record = await ledger.reservation("acme", "lost")
    assert record is not None and record.state == "RELEASED"


# --- expiry and the sweeper ------------------------------------------------------------------


async def test_sweep_leaves_live_reservations_alone(ledger: Ledger) -> None:
    await reserved(ledger, "a", [line()], {"USD": 100})
    assert await sweep_tenant(ledger, "acme") == 0
    assert await ledger.sweep_all() == 0
    assert await book(ledger) == {"tenant|acme|USD": (0, 100)}


async def test_expired_reservation_is_charged_its_estimate(opener: Opener) -> None:
    ledger = opener.open(EXPIRE_NOW).ledger
    await reserved(ledger, "a", [line()], {"USD": 100})
    assert await sweep_tenant(ledger, "acme") == 1
    assert await book(ledger) == {"tenant|acme|USD": (100, 0)}
    assert await sweep_tenant(ledger, "acme") == 0


async def test_commit_after_expiry_charges_only_difference(opener: Opener) -> None:
    ledger = opener.open(EXPIRE_NOW).ledger
    over = await reserved(ledger, "a", [line()], {"USD": 100, "TOKENS": 10})
    under = await reserved(ledger, "b", [line()], {"USD": 100})
    assert await sweep_tenant(ledger, "acme") == 2
    settled = await ledger.commit(over, {"USD": 130, "TOKENS": 12})
    assert (settled.state, settled.first, settled.charged) == (
        "COMMITTED",
        True,
        {"USD": 30, "TOKENS": 2},
    )
    assert (await ledger.commit(under, {"USD": 70})).charged == {"USD": -30}
    assert await book(ledger) == {"tenant|acme|USD": (200, 0)}


async def test_expiry_releases_when_policy_says_release(opener: Opener) -> None:
    ledger = opener.open(ReservationSettings(cap_ms=0, on_expiry="release")).ledger
    resv = await reserved(ledger, "a", [line()], {"USD": 100})
    assert await ledger.sweep_all() == 1
    assert await book(ledger) == {"tenant|acme|USD": (0, 0)}
    assert (await ledger.commit(resv, {"USD": 90})).charged == {"USD": 90}
    assert await book(ledger) == {"tenant|acme|USD": (90, 0)}


async def test_dead_owners_reservations_are_reclaimed_at_once(ledger: Ledger) -> None:
    await reserved(ledger, "a", [line()], {"USD": 100})
    assert await sweep_tenant(ledger, "acme", dead_owners=["someone-else"]) == 0
    assert await sweep_tenant(ledger, "acme", dead_owners=["me"]) == 1
    assert await book(ledger) == {"tenant|acme|USD": (100, 0)}


async def test_expired_tombstone_is_forgotten(opener: Opener) -> None:
    ledger = opener.open(ReservationSettings(tombstone_ms=0)).ledger
    resv = await reserved(ledger, "a", [line()], {"USD": 100})
    await ledger.commit(resv, {"USD": 100})
    await asyncio.sleep(0.002)
    assert await sweep_tenant(ledger, "acme") == 0
    assert (await ledger.commit(resv, {"USD": 100})).first  # no record left to say otherwise


async def test_a_kept_scope_stays_with_its_record_and_goes_with_it(opener: Opener) -> None:
    """An action's reservation keeps the scope path it was made with (for whoever settles it
    later), a call's does not; the scope is forgotten with its record's tombstone."""
    ledger = opener.open(ReservationSettings(tombstone_ms=0)).ledger
    path = "tenant=acme/agent=bot"
    kept = replace(ask("a", [line()], {"USD": 100}), scope=path, keep_scope=True)
    results = [await ledger.reserve(kept), await ledger.reserve(ask("b", [line()], {"USD": 1}))]
    record, call = await ledger.reservation("acme", "a"), await ledger.reservation("acme", "b")
    assert record is not None and record.scope == path
    assert call is not None and call.scope is None
    for result in results:
        assert result.reservation is not None
        await ledger.commit(result.reservation, {"USD": 1})
    settled = await ledger.reservation("acme", "a")
    assert settled is not None and (settled.state, settled.scope) == ("COMMITTED", path)
    await asyncio.sleep(0.002)
    await sweep_tenant(ledger, "acme")
    assert await ledger.reservation("acme", "a") is None
    assert await resv_entries(ledger) == 0


async def test_run_entries_expire_after_idle_ttl(opener: Opener) -> None:
    # Idle from the moment the call could no longer be open (cap 0: at once).
    ledger = opener.open(ReservationSettings(run_idle_ms=0, cap_ms=0)).ledger
    resv = await reserved(ledger, "a", [line(), line("run", "r1", period="none")], {"USD": 5})
    await ledger.commit(resv, {"USD": 5})
    await asyncio.sleep(0.002)
    await sweep_tenant(ledger, "acme")
    assert await book(ledger) == {"tenant|acme|USD": (5, 0)}


async def test_sweep_all_covers_every_tenant_that_reserved(opener: Opener) -> None:
    ledger = opener.open(EXPIRE_NOW).ledger
    for tenant in ("acme", "globex"):
        await ledger.reserve(ask("a", [line(value=tenant)], tenant=tenant))
    await ledger.heartbeat()
    assert await ledger.sweep_all() == 2
    assert await book(ledger, "globex") == {"tenant|globex|USD": (100, 0)}


# --- concurrency -----------------------------------------------------------------------------


async def test_concurrent_reserves_admit_exactly_what_fits(ledger: Ledger) -> None:
    k, amount = 37, 1_234_567
    lines = [line(limit=k * amount), line("run", "r1", limit=10**12, period="none")]
    results = await asyncio.gather(
        *(ledger.reserve(ask(f"r{i}", lines, {"USD": amount})) for i in range(200))
    )
    assert sum(r.allowed for r in results) == k
    assert await book(ledger) == {"tenant|acme|USD": (0, k * amount), "run|r1|USD": (0, k * amount)}
