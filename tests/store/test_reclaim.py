"""A dead replica's reclaim (issue 15, the review of its sweeper), on `memory://` and a real
Redis (a Redis Cluster too where its index differs): a call of the dead replica that cannot be
charged holds back none of its others; a tenant whose due time moves while the reclaim runs is
still reclaimed; a reclaim whose pass runs out of time resumes where it stopped, reading the
index or visiting its tenants."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import EVERY_STORE
from hooks_support import set_clock_offset
from settle_support import replica, tenant_usd
from sweep_support import (
    SAFE,
    instances,
    ledger_alone,
    reserved,
    set_sum,
    silent_instance,
    sums,
    tenant_line,
)
from sweep_support import ask as usd

from proxy.store.ledger import RedisLedger
from proxy.store.ledger.base import BudgetLine

MINUTE_MS = 60_000


async def test_a_dead_replicas_stuck_call_holds_back_none_of_its_others(store_url: str) -> None:
    """The first of a dead replica's open calls its reclaim finds also holds a workflow line at
    the edge of the safe range, so its charge is refused: the five found after it are charged
    all the same, and it stays OPEN (nothing written; reported). The replica is forgotten
    nonetheless, which loses nothing: the stuck call keeps its own deadline, and the sweep
    charges it there, as any call's, once its line is back in range."""
    ledger = ledger_alone(store_url)
    workflow = BudgetLine("workflow", "w1", "USD", "month", 10**9)
    edge = dataclasses.replace(usd("acme", "a-stuck", 100), lines=[tenant_line("acme"), workflow])
    try:
        async with replica(ledger, store_url, "ghost") as ghost:
            stuck = await reserved(ghost, edge)
            for i in range(5):
                await reserved(ghost, usd("acme", f"b{i}", 10))
        await set_sum(ledger, store_url, "acme", f"{stuck.fields[1]}|spent", SAFE - 50)
        await silent_instance(ledger, store_url, "ghost")
        assert await ledger.sweep_all() == 5
        assert ledger.sweep_errors == 1
        record = await ledger.reservation("acme", "a-stuck")
        assert record is not None and record.state == "OPEN"
        assert await tenant_usd(ledger) == (50, 100)
        assert "ghost" not in await instances(ledger, store_url)
        # Its deadline come, the due part of a sweep charges it (its line back in range).
        await set_sum(ledger, store_url, "acme", f"{stuck.fields[1]}|spent", 0)
        await set_clock_offset(ledger, "acme", ledger.settings.cap_ms + MINUTE_MS)
        assert await ledger.sweep_all() == 1
        record = await ledger.reservation("acme", "a-stuck")
        assert record is not None and record.state == "EXPIRED_CHARGED"
        assert await tenant_usd(ledger) == (150, 0)
    finally:
        await ledger.close()


@EVERY_STORE
async def test_a_tenant_whose_due_time_moves_during_a_reclaim_is_still_reclaimed(
    store_url: str,
) -> None:
    """120 tenants hold calls due in 10 minutes; a dead replica holds one in `zlate`, due at
    the cap (30 minutes), so it is among the last of the index by due time. One step of the
    reclaim a pass; after the first, a call with a one-second deadline in `zlate` moves it to
    the front of the index, behind where the reclaim is. The reclaim still charges the dead
    replica's call there before it forgets the replica (else the call would hold its budget
    until its deadline)."""
    ledger = ledger_alone(store_url)
    if isinstance(ledger, RedisLedger):
        ledger.reclaim_scan = 50  # the index read in steps of about 50 tenants
    try:
        for i in range(120):
            await reserved(ledger, usd(f"t{i:03d}", "soon", 1, ttl_ms=10 * MINUTE_MS))
        async with replica(ledger, store_url, "ghost") as ghost:
            await reserved(ghost, usd("zlate", "held", 100))
        await silent_instance(ledger, store_url, "ghost")
        ledger.sweep_budget_s = 0.0
        await ledger.sweep_all()
        await reserved(ledger, usd("zlate", "brief", 10, ttl_ms=1000))
        passes = 1
        while "ghost" in await instances(ledger, store_url):
            await ledger.sweep_all()
            passes += 1
            assert passes <= 400, "the reclaim never finishes"
        record = await ledger.reservation("zlate", "held")
        assert record is not None and record.state == "EXPIRED_CHARGED"
        assert (await sums(ledger, "zlate"))[0] >= 100
    finally:
        await ledger.close()


async def test_a_reclaim_out_of_time_resumes_where_it_stopped(store_url: str) -> None:
    """A pass whose time budget is spent at once reclaims one tenant of a dead replica's; the
    next pass goes on with the next tenant rather than starting over, so the replica's calls in
    all three tenants are charged and it is forgotten within a few passes."""
    ledger = ledger_alone(store_url)
    tenants = ("a", "b", "c")
    try:
        async with replica(ledger, store_url, "ghost") as ghost:
            for tenant in tenants:
                await reserved(ghost, usd(tenant, "held", 100))
        await silent_instance(ledger, store_url, "ghost")
        ledger.sweep_budget_s = 0.0
        per_pass = [await ledger.sweep_all()]
        assert per_pass == [1]
        while "ghost" in await instances(ledger, store_url):
            per_pass.append(await ledger.sweep_all())
            assert len(per_pass) <= 5, per_pass
        assert sum(per_pass) == 3
        assert [await sums(ledger, t) for t in tenants] == [(100, 0)] * 3
    finally:
        await ledger.close()


@pytest.mark.parametrize("store_url", ["redis"], indirect=True)
async def test_a_reclaim_out_of_time_while_reading_the_index_resumes_there(
    store_url: str,
) -> None:
    """300 tenants with only settled calls (nothing of theirs due within the cap) fill the due
    index; a dead replica holds calls in three more. The reclaim reads the index 20 tenants a
    step, one step a pass when nothing it reads is due within the cap: a pass that runs out of
    time there goes on from that step next time, rather than taking the index for read and
    forgetting the replica before its calls were found."""
    ledger = ledger_alone(store_url)
    assert isinstance(ledger, RedisLedger)
    ledger.reclaim_scan = 20
    tenants = ("held-a", "held-b", "held-c")
    try:
        for i in range(300):
            await ledger.commit(await reserved(ledger, usd(f"idle{i:03d}", "done", 1)), {"USD": 1})
        async with replica(ledger, store_url, "ghost") as ghost:
            for tenant in tenants:
                await reserved(ghost, usd(tenant, "held", 100))
        await silent_instance(ledger, store_url, "ghost")
        ledger.sweep_budget_s = 0.0
        passes = 0
        while "ghost" in await instances(ledger, store_url):
            await ledger.sweep_all()
            passes += 1
            assert passes <= 100, "the reclaim never finishes"
        assert [await sums(ledger, t) for t in tenants] == [(100, 0)] * 3
    finally:
        await ledger.close()
