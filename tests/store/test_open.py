"""One store URL, every store on it (proxy/store/open.py): on Redis they share one client, and the
ledger's scripts keep the wire; on memory:// the tenant store works on the ledger's state."""

from __future__ import annotations

import redis.asyncio as aioredis
from conftest import EVERY_STORE

from proxy.core.types import ReservationSettings
from proxy.store.idempotency import Stored
from proxy.store.ledger.base import BudgetLine, Candidate, ReserveRequest
from proxy.store.open import open_store
from proxy.store.replays import Record
from proxy.store.tenants import TenantRecord

ONE = BudgetLine("tenant", "acme", "USD", "month", 1000)


async def test_the_stores_on_one_redis_share_one_client_beside_the_scripts_wire(
    redis_url: str,
) -> None:
    """Each store used in turn: one pooled connection serves every store's commands, and the
    reserve and commit scripts go over one connection of their own (five clients would be five
    connections, plus the wire)."""
    raw = aioredis.Redis.from_url(redis_url)
    stores = open_store(redis_url, ReservationSettings())
    try:
        await stores.tenants.create_tenant(TenantRecord("acme", "pro"), actor="test")
        held = await stores.ledger.reserve(
            ReserveRequest("acme", "r1", [ONE], [Candidate({"USD": 1})])
        )
        assert held.reservation is not None
        await stores.ledger.commit(held.reservation, {"USD": 1})
        await stores.api_keys.create("acme")
        assert await stores.replays.claim("acme", "d", Record("h")) is None
        await stores.replays.keep("acme", "d", Record("h", 200, (), b"\xff answer"))
        assert await stores.replays.claim("acme", "d", Record("h")) == Record(
            "h", 200, (), b"\xff answer"
        )
        assert await stores.idempotency.begin("k", "h") is None
        await stores.idempotency.finish("k", Stored("h", 201, b"{}"))
        assert (await stores.idempotency.begin("k", "h")) == Stored("h", 201, b"{}")
        assert len(await raw.client_list()) == 1 + 2  # this test's own, then the stores'
    finally:
        await stores.close()
        await raw.aclose()


@EVERY_STORE
async def test_what_the_tenant_store_writes_the_ledger_reserves_by(store_url: str) -> None:
    """A suspension through `tenants` is what the ledger's reserve checks, atomically."""
    stores = open_store(store_url, ReservationSettings())
    try:
        await stores.tenants.create_tenant(TenantRecord("acme", "pro"), actor="test")
        await stores.tenants.change_status("acme", "suspended", actor="ops", reason="test")
        refused = await stores.ledger.reserve(
            ReserveRequest("acme", "r1", [ONE], [Candidate({"USD": 1})])
        )
        assert (refused.allowed, refused.status) == (False, "suspended")
        assert [r.reserved for r in await stores.ledger.balances("acme")] == []
    finally:
        await stores.close()
