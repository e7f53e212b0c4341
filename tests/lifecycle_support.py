"""Helpers for the reservation-lifecycle tests (issue 15): stores opened by URL, time travel by
the tenant's clock offset, and reserve requests on the tenant's budget lines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from proxy.core.types import ReservationSettings
from proxy.store.ledger import MemoryLedger, RedisLedger
from proxy.store.ledger.base import BudgetLine, Candidate, Quotas, ReserveRequest
from proxy.store.ledger.common import wall_clock_ms
from proxy.store.ledger.tenancy import TenantRecord

Store = MemoryLedger | RedisLedger
MONTHLY = BudgetLine("tenant", "acme", "USD", "month", 1000)
DAILY = BudgetLine("tenant", "acme", "USD", "day", 1000)
HOUR = 3_600_000
NO_QUOTAS = Quotas()


def open_store(url: str, settings: ReservationSettings, owner: str = "me") -> Store:
    """`memory://` or a Redis URL."""
    if url == "memory://":
        return MemoryLedger(settings, owner)
    return RedisLedger(url, settings, owner)


def ms(text: str) -> int:
    """An ISO instant (UTC) in milliseconds."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


async def at(store: Store, when: str | int, tenant: str = "acme") -> None:
    """Make the tenant's scripts see `when` (UTC; ISO text or ms): Redis TIME and this process's
    clock are the same machine's."""
    instant = ms(when) if isinstance(when, str) else when
    await store.set_clock_offset(tenant, instant - wall_clock_ms())


async def create(store: Store, tenant: str = "acme", **kwargs: object) -> TenantRecord:
    return await store.create_tenant(TenantRecord(tenant, "pro", **kwargs), actor="ops")  # type: ignore[arg-type]


def ask(
    rid: str,
    lines: Sequence[BudgetLine] = (MONTHLY,),
    usd: int = 100,
    *,
    offset: int = 0,
    run: str | None = None,
    quotas: Quotas = NO_QUOTAS,
) -> ReserveRequest:
    return ReserveRequest(
        "acme", rid, lines, [Candidate({"USD": usd})], run=run, quotas=quotas, utc_offset_min=offset
    )


async def usd_rows(store: Store, tenant: str = "acme") -> dict[str, tuple[int, int]]:
    """`<level>|<value>|<period id>` -> (spent, reserved) of the tenant's USD lines."""
    return {
        f"{r.level}|{r.value}|{r.period_id}": (r.spent, r.reserved)
        for r in await store.balances(tenant)
        if r.unit == "USD"
    }
