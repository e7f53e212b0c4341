"""The ledger contract's shared parts: every store opened the same way, and requests and books
written alike (test_ledger_contract, test_ledger_quotas, test_ledger_degrade)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from proxy.core.types import ReservationSettings
from proxy.store.ledger import MemoryLedger, RedisLedger
from proxy.store.ledger.base import BudgetLine, Candidate, Ledger, Quotas, ReserveRequest
from proxy.store.redis import layout as keys
from proxy.store.redis.clients import open_client

EXPIRE_NOW = ReservationSettings(cap_ms=0)
NO_QUOTAS = Quotas()


@dataclass
class Stores:
    """Opens ledgers of one kind on one shared store, and closes them after the test."""

    kind: str
    url: str = ""
    opened: list[Ledger] = field(default_factory=list)

    def open(
        self, settings: ReservationSettings | None = None, owner: str = "me", **kwargs: Any
    ) -> Ledger:
        settings = settings or ReservationSettings()
        ledger: Ledger
        if self.kind == "memory":
            ledger = MemoryLedger(settings, owner, **kwargs)
        else:
            ledger = RedisLedger(self.url, settings, owner, **kwargs)
        self.opened.append(ledger)
        return ledger

    async def add_credit(self, ledger: Ledger, prefix: str, amount: int) -> None:
        """What an admin top-up will do (no API for it yet)."""
        if isinstance(ledger, MemoryLedger):
            ledger._tenant("acme").ledger[f"{prefix}|credit"] = amount
            return
        client = open_client(self.url)
        await client.hset(keys.tenant_keys("acme")[0], f"{prefix}|credit", str(amount))
        await client.aclose()

    async def resv_entries(self, ledger: Ledger) -> int:
        """How many entries the tenant's reservation records take in the store."""
        if isinstance(ledger, MemoryLedger):
            return len(ledger._tenant("acme").resv)
        client = open_client(self.url)
        try:
            return int(await client.hlen(keys.tenant_keys("acme")[2]))
        finally:
            await client.aclose()


STORE_URLS = {"redis": "redis_url", "redis+cluster": "redis_cluster_url"}


@pytest.fixture(params=["memory", "redis", "redis+cluster"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    fixture = STORE_URLS.get(request.param)
    url = "" if fixture is None else str(request.getfixturevalue(fixture))
    opened = Stores(request.param, url)
    yield opened
    for ledger in opened.opened:
        await ledger.close()


@pytest.fixture
def ledger(stores: Stores) -> Ledger:
    return stores.open()


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
    rows = await ledger.balances(tenant)
    return {f"{r.level}|{r.value}|{r.unit}": (r.spent, r.reserved) for r in rows}
