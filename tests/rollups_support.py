"""What the rollup tests share (tests/store/test_rollups.py and its neighbours): the instant
they put a tenant's clock at, and a reserve that must succeed."""

from __future__ import annotations

from datetime import UTC, datetime

from hooks_support import set_clock_offset

from proxy.store.ledger.base import Ledger, Reservation, ReserveRequest

DAY = 86_400_000
NOON = int(datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp() * 1000)
"""The instant the tests put the tenant's clock at: day 2026-03-10 in UTC."""


def wall_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


async def at(ledger: Ledger, ms: int, tenant: str = "acme") -> None:
    """Put the tenant's clock at about `ms` (the test runs in well under a minute)."""
    await set_clock_offset(ledger, tenant, ms - wall_ms())


async def reserved(ledger: Ledger, request: ReserveRequest) -> Reservation:
    result = await ledger.reserve(request)
    assert result.reservation is not None, result
    return result.reservation
