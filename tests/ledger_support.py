"""The ledger contract's shared parts: the ledger fixture on every store (conftest.ALL_STORES,
through `opener`), what a test writes into a store that no API call makes, and requests and
books written alike (test_ledger_contract, test_ledger_quotas, test_ledger_degrade)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from conftest import Opener

from proxy.core.types import ReservationSettings
from proxy.store.ledger import MemoryLedger, RedisLedger
from proxy.store.ledger.base import (
    BalanceRow,
    BudgetLine,
    Candidate,
    Ledger,
    Quotas,
    ReserveRequest,
)
from proxy.store.ledger.common import balance_rows
from proxy.store.redis import layout

EXPIRE_NOW = ReservationSettings(cap_ms=0)
NO_QUOTAS = Quotas()


@pytest.fixture
def ledger(opener: Opener) -> Ledger:
    """A ledger on each store, with the default settings."""
    return opener.open().ledger


async def add_credit(ledger: Ledger, prefix: str, amount: int) -> None:
    """Set acme's credit on a line, as an admin top-up would."""
    if isinstance(ledger, MemoryLedger):
        ledger._tenant("acme").ledger[f"{prefix}|credit"] = amount
        return
    assert isinstance(ledger, RedisLedger)
    await ledger.scripts.client.hset(layout.tenant_keys("acme")[0], f"{prefix}|credit", str(amount))


async def resv_entries(ledger: Ledger) -> int:
    """How many entries acme's reservation records take in the store."""
    if isinstance(ledger, MemoryLedger):
        return len(ledger._tenant("acme").resv)
    assert isinstance(ledger, RedisLedger)
    return int(await ledger.scripts.client.hlen(layout.tenant_keys("acme")[2]))


def line(
    level: str = "tenant",
    value: str = "acme",
    limit: int = 1000,
    unit: str = "USD",
    period: str = "month",
) -> BudgetLine:
    return BudgetLine(level, value, unit, period, limit)  # type: ignore[arg-type]


def ask(
    rid: str,
    lines: list[BudgetLine],
    *candidates: Mapping[str, int] | Candidate,
    shadow: bool = False,
    tenant: str = "acme",
    run: str | None = None,
    quotas: Quotas = NO_QUOTAS,
) -> ReserveRequest:
    """A request; plain amounts become unconditional candidates."""
    forms = [c if isinstance(c, Candidate) else Candidate(c) for c in candidates]
    return ReserveRequest(
        tenant, rid, lines, forms or [Candidate({"USD": 100})], shadow, run, quotas
    )


async def book(ledger: Ledger, tenant: str = "acme") -> dict[str, tuple[int, int]]:
    """(spent, reserved) per `<level>|<value>|<unit>` entry."""
    rows = await every_row(ledger, tenant)
    return {f"{r.level}|{r.value}|{r.unit}": (r.spent, r.reserved) for r in rows}


async def every_row(ledger: Ledger, tenant: str = "acme") -> list[BalanceRow]:
    """The tenant's lines and its end users' (`balances` leaves end users out), read raw."""
    if isinstance(ledger, MemoryLedger):
        users = dict(ledger._tenants[tenant].ledger.users) if tenant in ledger._tenants else {}
    else:
        assert isinstance(ledger, RedisLedger)
        users = await ledger.scripts.client.hgetall(layout.users_key(tenant))
    return [*await ledger.balances(tenant), *balance_rows(users)]
