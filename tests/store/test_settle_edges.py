"""What the review of issue 15 found at the edges of the reservation lifecycle, on every store
(conftest.ALL_STORES): a settle of a record the store no longer has frees nothing other calls
hold; an action's commit after its release at expiry, or of an id the store does not know,
changes nothing; one stuck expiry never holds back its tenant's others; a dead replica's reclaim
finishes while others keep dying, and stops for one that heartbeats again; a repeat of a settled
reservation is not allowed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import EVERY_STORE, REDIS
from hooks_support import quota_counters, set_clock_offset, sweep_tenant
from settle_support import (
    actions,
    actions_policy,
    forget,
    hooked,
    points,
    post,
    replica,
    tenant_usd,
)
from sweep_support import (
    SAFE,
    instances,
    reserved,
    set_sum,
    silent_instance,
    sums,
    tenant_line,
)
from sweep_support import ask as usd

from proxy.core.errors import AmountOutOfRange
from proxy.core.types import ReservationSettings
from proxy.store.ledger import RedisLedger
from proxy.store.ledger.base import BudgetLine, Quotas, Reservation
from proxy.store.open import open_store

SLOT = "q|conc|tenant|acme"
ONE_OF_FIVE = Quotas(concurrent=[("tenant", "acme", 5)])

# --- a record the store no longer has --------------------------------------------------------


@EVERY_STORE
async def test_a_late_commit_after_its_tombstone_is_gone_frees_nothing_others_hold(
    store_url: str,
) -> None:
    """Charged its estimate at expiry, its tombstone then gone: the late commit charges its
    actual (the estimate is so recorded twice: over, never under) and leaves the reservation
    and the slot another call holds alone."""
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    try:
        other = await reserved(ledger, usd("acme", "other", 100, quotas=ONE_OF_FIVE))
        late = await reserved(ledger, usd("acme", "late", 200, ttl_ms=0, quotas=ONE_OF_FIVE))
        assert await sweep_tenant(ledger, "acme") == 1
        assert await sums(ledger, "acme") == (200, 100)
        await forget(ledger, store_url, "acme", "late")
        settled = await ledger.commit(late, {"USD": 150})
        assert (settled.state, settled.first, settled.charged) == ("COMMITTED", True, {"USD": 150})
        assert await sums(ledger, "acme") == (350, 100)
        assert await quota_counters(ledger, "acme") == {SLOT: 1}
        assert (await ledger.commit(other, {"USD": 100})).first
        assert await sums(ledger, "acme") == (450, 0)
        assert await quota_counters(ledger, "acme") == {}
    finally:
        await stores.close()


@EVERY_STORE
async def test_a_settle_that_asks_for_a_known_record_writes_nothing_for_an_unknown_id(
    store_url: str,
) -> None:
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    try:
        other = await reserved(ledger, usd("acme", "other", 100, quotas=ONE_OF_FIVE))
        ghost = Reservation("acme", "ghost", other.fields, {"USD": 300}, other.held)
        committed = await ledger.commit(ghost, {"USD": 50}, final_release=True, known_only=True)
        released = await ledger.release(ghost, known_only=True)
        for result in (committed, released):
            assert (result.state, result.first, result.charged) == ("MISSING", False, {})
        assert await sums(ledger, "acme") == (0, 100)
        assert await quota_counters(ledger, "acme") == {SLOT: 1}
        assert await ledger.reservation("acme", "ghost") is None
    finally:
        await stores.close()


# --- a release at expiry is final for an action ----------------------------------------------


@EVERY_STORE
async def test_a_final_commit_after_a_release_at_expiry_charges_nothing(store_url: str) -> None:
    stores = open_store(store_url, ReservationSettings(on_expiry="release"))
    ledger = stores.ledger
    try:
        held = await reserved(ledger, usd("acme", "r1", 100, ttl_ms=0))
        assert await sweep_tenant(ledger, "acme") == 1
        refused = await ledger.commit(held, {"USD": 80}, final_release=True)
        assert (refused.state, refused.first, refused.charged) == ("EXPIRED_RELEASED", False, {})
        assert await sums(ledger, "acme") == (0, 0)
        record = await ledger.reservation("acme", "r1")
        assert record is not None and record.state == "EXPIRED_RELEASED"
        # An LLM call's commit is not final: what the provider billed is charged.
        assert (await ledger.commit(held, {"USD": 80})).charged == {"USD": 80}
        assert await sums(ledger, "acme") == (80, 0)
    finally:
        await stores.close()


# --- the actions API -------------------------------------------------------------------------


@EVERY_STORE
async def test_an_action_settle_of_a_record_gone_since_its_lookup_is_404_and_changes_nothing(
    tmp_path: Path, store_url: str
) -> None:
    """The record is looked up, then gone (its tombstone expired, the store lost it) when the
    settle runs: 404, as for any id the store does not know, and nothing is written."""
    policy, hooks = actions_policy(tmp_path), []
    ledger = hooked(store_url, policy.reservations, hooks)
    async with actions(store_url, policy, ledger) as stack:
        await post(stack, "", {"unit": "RISK_POINTS", "amount": 50})
        for how in ("commit", "release"):
            _, gone = await post(stack, "", {"unit": "RISK_POINTS", "amount": 30})
            before = await points(ledger)

            async def lose(rid: str = gone["id"]) -> None:
                await forget(ledger, store_url, "acme", rid)

            hooks.append(lose)
            status, error = await post(stack, f"/{gone['id']}/{how}", {})
            assert (status, error["error"]["code"]) == (404, "reservation_not_found"), error
            assert await points(ledger) == before, how  # no record says whose the 30 is
            assert await ledger.reservation("acme", gone["id"]) is None


@EVERY_STORE
async def test_an_action_commit_racing_its_release_at_expiry_is_409_and_charges_nothing(
    tmp_path: Path, store_url: str
) -> None:
    """The commit looked the reservation up OPEN; the sweeper released it at its ttl before the
    commit ran (`on_expiry: release`): the commit script refuses it, as after a release."""
    policy, hooks = actions_policy(tmp_path, on_expiry="release"), []
    ledger = hooked(store_url, policy.reservations, hooks)
    async with actions(store_url, policy, ledger) as stack:
        _, held = await post(stack, "", {"unit": "RISK_POINTS", "amount": 50, "ttl": 1})

        async def expire() -> None:
            await set_clock_offset(ledger, "acme", 2_000)
            assert await ledger.sweep_all() == 1

        hooks.append(expire)
        status, error = await post(stack, f"/{held['id']}/commit", {"amount": 40})
        assert (status, error["error"]["code"]) == (409, "reservation_released"), error
        assert await points(ledger) == (0, 0)
        record = await ledger.reservation("acme", held["id"])
        assert record is not None and record.state == "EXPIRED_RELEASED"


# --- a stuck expiry --------------------------------------------------------------------------


@EVERY_STORE
async def test_a_stuck_expiry_does_not_hold_back_the_tenants_other_expiries(
    store_url: str,
) -> None:
    """The first reservation due also holds a workflow line at the edge of the safe range, so
    its expiry charge is refused. The five due after it on the tenant line expire all the same,
    pass after pass; the stuck one stays OPEN, is reported (logged, counted) each time it is
    tried, and is tried again once its retry time has come."""
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    workflow = BudgetLine("workflow", "w1", "USD", "month", 10**9)
    edge = dataclasses.replace(
        usd("acme", "a-stuck", 100, ttl_ms=0), lines=[tenant_line("acme"), workflow]
    )
    try:
        stuck = await reserved(ledger, edge)
        for i in range(5):
            await reserved(ledger, usd("acme", f"b{i}", 10, ttl_ms=0))
        await set_sum(ledger, store_url, "acme", f"{stuck.fields[1]}|spent", SAFE - 50)
        assert await ledger.sweep_all() == 5
        assert ledger.sweep_errors == 1
        states = {rid: await ledger.reservation("acme", rid) for rid in ("a-stuck", "b0", "b4")}
        assert {rid: r.state for rid, r in states.items() if r} == {
            "a-stuck": "OPEN",
            "b0": "EXPIRED_CHARGED",
            "b4": "EXPIRED_CHARGED",
        }
        assert await tenant_usd(ledger) == (50, 100)
        # Before its retry time it is not tried again, and what else comes due expires.
        await reserved(ledger, usd("acme", "c", 10, ttl_ms=0))
        assert await ledger.sweep_all() == 1
        assert ledger.sweep_errors == 1
        # Then it is tried (and reported) again, and one sweep of the tenant says so too.
        await set_clock_offset(ledger, "acme", ledger.stuck_retry_ms + 1000)
        await reserved(ledger, usd("acme", "d", 10, ttl_ms=0))
        with pytest.raises(AmountOutOfRange, match="workflow"):
            await sweep_tenant(ledger, "acme")
        assert await tenant_usd(ledger) == (70, 100)
        await set_sum(ledger, store_url, "acme", f"{stuck.fields[1]}|spent", 0)
        await set_clock_offset(ledger, "acme", 2 * (ledger.stuck_retry_ms + 1000))
        assert await ledger.sweep_all() == 1
        assert await tenant_usd(ledger) == (170, 0)
    finally:
        await stores.close()


# --- a reclaim while replicas churn ----------------------------------------------------------


@pytest.mark.parametrize("store_url", [REDIS], indirect=True)
async def test_a_dead_replicas_reclaim_finishes_while_other_replicas_keep_dying(
    store_url: str,
) -> None:
    """One step of the reclaim a pass (its time budget spent at once: a few hundred records
    scanned), and another replica dies before every pass: the reclaim in progress goes on from
    where it stopped in the tenant's records rather than starting over, so the dead replica's
    reservations are all charged and it is forgotten."""
    dead = RedisLedger(store_url, ReservationSettings(), "ghost")
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    assert isinstance(ledger, RedisLedger)
    try:
        for i in range(800):
            await reserved(dead, usd("whale", f"open{i}", 1))
        await reserved(dead, usd("minnow", "open", 1))
        await silent_instance(ledger, store_url, "ghost")
        ledger.sweep_budget_s = 0.0
        passes = 0
        while "ghost" in await instances(ledger, store_url):
            await silent_instance(ledger, store_url, f"churn{passes}")
            await ledger.sweep_all()
            passes += 1
            assert passes <= 20, "the reclaim never finishes"
        assert [await sums(ledger, t) for t in ("whale", "minnow")] == [(800, 0), (1, 0)]
    finally:
        await dead.close()
        await stores.close()


async def test_a_replica_alive_again_keeps_its_calls_though_its_reclaim_had_begun(
    store_url: str,
) -> None:
    """A replica presumed dead (its heartbeat silent) whose reclaim has begun, one tenant a
    pass, heartbeats again: it was only paused, and its calls in the tenant not yet reclaimed
    are still in flight. Though another replica dies meanwhile, they stay held, with their
    concurrency slots (a third call is refused), and it stays listed."""
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    two = Quotas(concurrent=[("tenant", "bbb", 2)])
    try:
        async with replica(ledger, store_url, "ghost") as ghost:
            await reserved(ghost, usd("aaa", "a1", 1))
            await reserved(ghost, usd("bbb", "b1", 1, quotas=two))
            await reserved(ghost, usd("bbb", "b2", 1, quotas=two))
        await silent_instance(ledger, store_url, "ghost")
        ledger.sweep_budget_s = 0.0
        assert await ledger.sweep_all() == 1  # the reclaim's first step: aaa
        assert await sums(ledger, "aaa") == (1, 0)
        async with replica(ledger, store_url, "ghost") as ghost:
            await ghost.heartbeat()
        await silent_instance(ledger, store_url, "churn")
        for _ in range(3):
            await ledger.sweep_all()
        assert await sums(ledger, "bbb") == (0, 2)
        assert await quota_counters(ledger, "bbb") == {"q|conc|tenant|bbb": 2}
        assert not (await ledger.reserve(usd("bbb", "b3", 1, quotas=two))).allowed
        assert await instances(ledger, store_url) == {"ghost"}
    finally:
        await stores.close()


# --- a repeat of a settled reservation -------------------------------------------------------


@EVERY_STORE
async def test_a_repeated_reserve_of_a_settled_reservation_is_not_allowed(store_url: str) -> None:
    """Reserving is idempotent by id: a repeat finds the record. Once it is settled nothing is
    held for it, so the repeat is not allowed (it says what the record became) and reserves
    nothing; it still says what the id reserved, for a settle by id (a spilled call's)."""
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    try:
        released = await reserved(ledger, usd("acme", "r1", 100))
        await ledger.release(released)
        expired = await reserved(ledger, usd("acme", "r2", 100, ttl_ms=0))
        assert await sweep_tenant(ledger, "acme") == 1
        for held, state in ((released, "RELEASED"), (expired, "EXPIRED_CHARGED")):
            again = await ledger.reserve(usd("acme", held.id, 100))
            assert (again.allowed, again.settled, again.reservation) == (False, state, held)
        assert await sums(ledger, "acme") == (100, 0)
        still = await ledger.reserve(usd("acme", "r3", 100))
        again = await ledger.reserve(usd("acme", "r3", 100))
        assert (again.allowed, again.settled, again.reservation) == (True, None, still.reservation)
        assert await sums(ledger, "acme") == (100, 100)
    finally:
        await stores.close()
