"""Two distinct charges never share an event id: Σ cost of the events a consumer keeps after
deduplicating by (source, id) is the ledger's `spent`."""

from __future__ import annotations

import asyncio

from conftest import EVERY_STORE
from hooks_support import sweep_tenant
from usage_events_support import ledger_on

from proxy.gateway.usage_events import cloud_event
from proxy.store.ledger.base import BudgetLine, Candidate, Ledger, ReserveRequest

LINE = BudgetLine("tenant", "acme", "USD", "month", 10**9)
CALL = '{"request_id":"q1","model":"m","lines":["tenant|acme|USD|m1"]}'


def request(rid: str, ttl_ms: int | None = None) -> ReserveRequest:
    return ReserveRequest("acme", rid, [LINE], [Candidate({"USD": 500})], ttl_ms=ttl_ms)


async def spent(ledger: Ledger) -> int:
    rows = await ledger.balances("acme")
    return sum(r.spent for r in rows if r.level == "tenant" and r.unit == "USD")


def deduplicated_usd(events: list[dict]) -> int:
    """What a consumer deduplicating by (source, id), as the README says, sums."""
    seen: dict[tuple[str, str], dict] = {}
    for e in events:
        seen.setdefault((e["source"], e["id"]), e)
    return sum(c["units"] for e in seen.values() for c in e["data"]["cost"] if c["unit"] == "USD")


async def drained(ledger: Ledger) -> list[dict]:
    entries = await ledger.outbox_read(100, rescan=True)
    return [cloud_event(e, "test") for e in entries]


@EVERY_STORE
async def test_a_commit_after_a_release_has_an_id_of_its_own(store_url: str) -> None:
    """A call's commit (no final_release) after its release charges the actual (commit.lua:
    RELEASED -> charge): its event is `<id>.after-release`, not the release's id."""
    async with ledger_on(store_url) as ledger:
        held = (await ledger.reserve(request("r1"))).reservation
        assert held is not None
        await ledger.release(held, event=CALL)
        await ledger.commit(held, {"USD": 321}, event=CALL)
        events = await drained(ledger)
        assert await spent(ledger) == 321
        ids = [e["id"] for e in events]
        assert ids == ["r1", "r1.after-release"]
        assert deduplicated_usd(events) == await spent(ledger)


async def test_a_commit_replayed_after_its_tombstone_expired_has_an_id_of_its_own(
    redis_url: str,
) -> None:
    """A commit retried after the tombstone expired (a spilled commit whose first try ran but
    whose reply was lost, replayed after a long outage) is a MISSING commit: the ledger charges
    again (never under), and its event is `<id>.missing.<ms>`."""
    async with ledger_on(redis_url, tombstone_ms=200) as ledger:
        held = (await ledger.reserve(request("r1"))).reservation
        assert held is not None
        await ledger.commit(held, {"USD": 321}, event=CALL)
        await asyncio.sleep(0.5)
        await sweep_tenant(ledger, "acme")  # drops the expired tombstone
        await ledger.commit(held, {"USD": 321}, event=CALL)
        events = await drained(ledger)
        first, again = (e["id"] for e in events)
        assert first == "r1" and again.startswith("r1.missing.")
        assert deduplicated_usd(events) == await spent(ledger), (
            [e["id"] for e in events],
            await spent(ledger),
        )
