"""ADV4: a claim kept for its TTL (timeout, broken exchange, cancelled handler) is never freed,
and the memory store drops an expired claim only when the SAME id is claimed again in the SAME
session. Before the change every handler freed its claim; now each timed-out call leaves an
entry in MemorySessions._claims for the life of the process: nothing sweeps them, and a dropped
session (MAX_BINDINGS, TENANT_BINDINGS) does not take its claims along. A client making distinct
ids time out (or break) grows the proxy's memory without bound; the store's own docstring says
it is bounded and its claims are the requests in flight."""

from __future__ import annotations

import contextlib

import pytest

from proxy.store.mcp_sessions import ClaimsFull, MemorySessions


async def test_expired_kept_claims_do_not_pile_up() -> None:
    now = [0.0]
    store = MemorySessions(lambda: now[0], max_bindings=2, tenant_bindings=2)
    for s in range(2):
        await store.bind("acme", "crm", f"s{s}", 60_000)
    for i in range(1000):  # calls that timed out: their claims are kept, never freed
        session = f"s{i % 2}"
        claiming = store.holds_claiming("acme", "crm", session, 60_000, str(i), 1_000, "t")
        held, claimed = await claiming
        assert held and claimed
    now[0] += 10.0  # every claim's TTL (1 s) is long over
    for s in range(2, 6):  # the old sessions are pushed out, too
        await store.bind("acme", "crm", f"s{s}", 60_000)
    await store.holds_claiming("acme", "crm", "s5", 60_000, "fresh", 1_000, "t")
    assert len(store._claims) <= 10, f"{len(store._claims)} claims held, all but one expired"


async def test_beyond_the_bound_a_new_claim_is_refused_and_no_live_one_dropped() -> None:
    now = [0.0]
    store = MemorySessions(lambda: now[0], max_claims=3)
    await store.bind("acme", "crm", "s", 60_000)
    for i, ttl in enumerate((5_000, 1_000, 9_000)):
        _, claimed = await store.holds_claiming("acme", "crm", "s", 60_000, str(i), ttl, "t")
        assert claimed
    with pytest.raises(ClaimsFull):
        await store.holds_claiming("acme", "crm", "s", 60_000, "3", 7_000, "t")
    assert len(store._claims) == 3
    for i in range(3):  # every live claim is still held
        assert not await store.claim("acme", "crm", "s", str(i), 1_000, "u")
    now[0] += 2.0  # id 1's claim (1 s) expires and makes room
    assert await store.claim("acme", "crm", "s", "3", 7_000, "t")


async def test_one_tenant_cannot_push_out_another_tenants_live_claim() -> None:
    """One tenant's ids in flight cannot free another tenant's: the victim's reused id would
    otherwise take over its first request's answer (README: request ids in flight)."""
    store = MemorySessions(lambda: 0.0, max_claims=4)
    await store.bind("victim", "crm", "v", 60_000)
    await store.bind("attacker", "crm", "a", 60_000)
    held, claimed = await store.holds_claiming("victim", "crm", "v", 60_000, "7", 5_000, "tv")
    assert held and claimed
    for i in range(10):
        with contextlib.suppress(ClaimsFull):
            await store.holds_claiming("attacker", "crm", "a", 60_000, str(i), 60_000, "ta")
    assert not await store.claim("victim", "crm", "v", "7", 5_000, "tv2")
