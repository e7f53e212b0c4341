"""Helpers for the sweeper's and the ledger bounds' tests: open a ledger on a store URL, reach
into a store to set up what no API call makes (a sum at the edge of the safe range, an instance
that went silent), and read what only the store shows (its instances, its script calls)."""

from __future__ import annotations

from typing import Any, cast

from proxy.ledger import MemoryLedger, RedisLedger, keys
from proxy.ledger.base import BudgetLine, Candidate, Quotas, Reservation, ReserveRequest
from proxy.ledger.clients import open_client
from proxy.policy.runtime import ReservationSettings

Store = MemoryLedger | RedisLedger
SAFE = 2**53 - 1
"""The largest magnitude the README lets a ledger sum reach."""


def open_store(url: str, settings: ReservationSettings | None = None, **kwargs: Any) -> Store:
    settings = settings or ReservationSettings()
    if url == "memory://":
        return MemoryLedger(settings, "me", **kwargs)
    return RedisLedger(url, settings, "me", **kwargs)


def tenant_line(tenant: str, limit: int = 10**9) -> BudgetLine:
    return BudgetLine("tenant", tenant, "USD", "month", limit)


def ask(
    tenant: str,
    rid: str,
    usd: int = 100,
    *,
    ttl_ms: int | None = None,
    shadow: bool = False,
    quotas: Quotas = Quotas(),
) -> ReserveRequest:
    """One USD line on the tenant; `ttl_ms=0` makes it due at once."""
    return ReserveRequest(
        tenant,
        rid,
        [tenant_line(tenant)],
        [Candidate({"USD": usd})],
        shadow=shadow,
        quotas=quotas,
        ttl_ms=ttl_ms,
    )


async def reserved(ledger: Store, request: ReserveRequest) -> Reservation:
    result = await ledger.reserve(request)
    assert result.reservation is not None, result
    return result.reservation


async def set_sum(ledger: Store, url: str, tenant: str, field: str, value: int) -> None:
    """Write a ledger sum directly (what many past commits would have left)."""
    if isinstance(ledger, MemoryLedger):
        ledger._tenants[tenant].ledger[field] = value
        return
    client = open_client(url, decode_responses=True)
    await client.hset(keys.tenant_keys(tenant)[0], field, str(value))
    await client.aclose()


async def sums(ledger: Store, tenant: str) -> tuple[int, int]:
    """(spent, reserved) of the tenant's one USD line."""
    (row,) = [r for r in await ledger.balances(tenant) if r.unit == "USD"]
    return row.spent, row.reserved


async def silent_instance(ledger: Store, url: str, owner: str) -> None:
    """An instance whose last heartbeat was long ago (a replica that died)."""
    if isinstance(ledger, MemoryLedger):
        ledger._instances[owner] = 0
        return
    client = open_client(url, decode_responses=True)
    await client.zadd(keys.INSTANCES, {owner: 0})
    await client.aclose()


async def instances(ledger: Store, url: str) -> set[str]:
    if isinstance(ledger, MemoryLedger):
        return set(ledger._instances)
    client = open_client(url, decode_responses=True)
    found = cast(list[str], await client.zrange(keys.INSTANCES, 0, -1))
    await client.aclose()
    return set(found)


async def script_calls(url: str) -> int:
    """How many EVALSHA the (single) Redis at `url` has run."""
    client = open_client(url, decode_responses=True)
    stats = cast(dict[str, Any], await client.info("commandstats"))
    await client.aclose()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
