"""Helpers for the reservation-lifecycle tests (issue 15): time travel by the tenant's clock
offset, and reserve requests on the tenant's budget lines, on every store opened by URL
(proxy.store.open.open_store)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from hooks_support import set_clock_offset
from ledger_support import every_row

from proxy.store.ledger.base import BudgetLine, Candidate, Quotas, ReserveRequest
from proxy.store.ledger.common import wall_clock_ms
from proxy.store.open import Stores
from proxy.store.tenants import TenantRecord

Store = Stores
MONTHLY = BudgetLine("tenant", "acme", "USD", "month", 1000)
DAILY = BudgetLine("tenant", "acme", "USD", "day", 1000)
HOUR = 3_600_000
NO_QUOTAS = Quotas()


def ms(text: str) -> int:
    """An ISO instant (UTC) in milliseconds."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


async def at(store: Store, when: str | int, tenant: str = "acme") -> None:
    """Make the tenant's scripts see `when` (UTC; ISO text or ms): Redis TIME and this process's
    clock are the same machine's."""
    instant = ms(when) if isinstance(when, str) else when
    await set_clock_offset(store, tenant, instant - wall_clock_ms())


async def create(store: Store, tenant: str = "acme", **kwargs: object) -> TenantRecord:
    record = TenantRecord(tenant, "pro", **kwargs)  # type: ignore[arg-type]
    return await store.tenants.create_tenant(record, actor="ops")


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
        for r in await every_row(store.ledger, tenant)
        if r.unit == "USD"
    }
