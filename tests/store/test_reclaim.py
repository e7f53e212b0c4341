"""A dead replica's reclaim (issue 15, the review of its sweeper), on `memory://` and a real
Redis: a reclaim whose pass runs out of time resumes where it stopped."""

from __future__ import annotations

from settle_support import replica
from sweep_support import ask as usd
from sweep_support import instances, open_store, reserved, silent_instance, sums


async def test_a_reclaim_out_of_time_resumes_where_it_stopped(store_url: str) -> None:
    """A pass whose time budget is spent at once reclaims one tenant of a dead replica's; the
    next pass goes on with the next tenant rather than starting over, so the replica's calls in
    all three tenants are charged and it is forgotten within a few passes."""
    ledger = open_store(store_url)
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
