"""What the usage-event tests share: a ledger opened on a store URL for one test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from proxy.core.types import ReservationSettings
from proxy.store.ledger.base import Ledger
from proxy.store.open import open_store


@asynccontextmanager
async def ledger_on(store_url: str, **settings: int) -> AsyncIterator[Ledger]:
    """The ledger of `store_url`, with `settings` (ReservationSettings fields), closed after."""
    stores = open_store(store_url, ReservationSettings(**settings))
    try:
        yield stores.ledger
    finally:
        await stores.close()
