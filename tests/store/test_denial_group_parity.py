"""ADV4: the denial grouping (ReserveRequest.group, carried in reserve.lua's ARGV[13] after a
space) must give the same audit entries and the same `q|agg|` field names on the memory store
and on Redis, for the same sequence of denied reserves: group None, a group without an action,
a group equal to the action, a glob group shared by two actions, actions starting with 0/1."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hooks_support import set_clock_offset

from proxy.core.types import ReservationSettings
from proxy.store.ledger import MemoryLedger
from proxy.store.ledger.base import BudgetLine, Candidate, ReserveRequest
from proxy.store.ledger.common import wall_clock_ms
from proxy.store.ledger.memory_state import AGGREGATE
from proxy.store.open import open_store
from proxy.store.redis import layout
from proxy.store.tenants import TenantRecord

LINE = BudgetLine("tenant", "acme", "USD", "month", 10)
SEQUENCE: list[tuple[str | None, str | None, bool]] = [
    (None, "mcp:crm/?", False),
    (None, "mcp:crm/?", False),
    ("mcp:crm/a", None, False),
    ("mcp:crm/a", None, False),
    ("mcp:crm/a", "mcp:crm/a", False),
    ("mcp:crm/b", "mcp:crm/*", True),
    ("mcp:crm/c", "mcp:crm/*", True),
    ("1x", None, False),
    ("0y", "1x", True),
    ("mcp:crm/a", "mcp:crm/?", False),
]


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


async def run(url: str) -> tuple[list[dict[str, Any]], list[str]]:
    store = open_store(url, ReservationSettings())
    try:
        await store.tenants.create_tenant(TenantRecord("acme", "pro"), actor="ops")
        await set_clock_offset(store, "acme", ms("2026-11-23T10:00:05") - wall_clock_ms())
        for i, (action, group, keep) in enumerate(SEQUENCE):
            request = ReserveRequest(
                "acme", f"d{i}", (LINE,), [Candidate({"USD": 100})],
                scope="tenant=acme", action=action, group=group, keep_scope=keep,
            )
            assert not (await store.ledger.reserve(request)).allowed
        entries = [
            {k: v for k, v in e.fields.items() if k not in ("ts",)}
            for e in await store.tenants.audit("acme", decision="DENY")
        ]
        ledger = store.ledger
        if isinstance(ledger, MemoryLedger):
            counters = ledger.state.tenant("acme").counters.snapshot()
            names = [k for k in counters if k.startswith(AGGREGATE)]
        else:
            client = ledger.scripts.client  # type: ignore[attr-defined]
            raw = await client.hgetall(layout.tenant_keys("acme")[0])
            names = [k for k in raw if str(k).startswith(AGGREGATE)]
        return entries, sorted(str(n) for n in names)
    finally:
        await store.close()


async def test_memory_and_redis_group_denials_alike(redis_url: str) -> None:
    memory, redis = await run("memory://"), await run(redis_url)
    assert memory[1] == redis[1], f"q|agg| names differ:\nmemory {memory[1]}\nredis  {redis[1]}"
    assert memory[0] == redis[0], f"entries differ:\nmemory {memory[0]}\nredis  {redis[0]}"
