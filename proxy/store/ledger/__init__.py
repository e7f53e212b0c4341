"""The ledger: budgets reserved atomically before a call, settled after it.

`open_ledger` picks the store by URL scheme; `base.Ledger` is the interface the rest of the
proxy uses, and nothing outside this package imports a store directly.
"""

from __future__ import annotations

from proxy.core.types import ReservationSettings
from proxy.store.ledger.base import Ledger
from proxy.store.ledger.common import instance_id
from proxy.store.ledger.memory import MemoryLedger
from proxy.store.ledger.redis import RedisLedger
from proxy.store.redis.clients import check_url, is_redis

__all__ = ["Ledger", "MemoryLedger", "RedisLedger", "open_ledger"]


def open_ledger(url: str, settings: ReservationSettings, owner: str | None = None) -> Ledger:
    """The store for `url`: `memory://` (this process only), `redis://` or `rediss://`, or
    `redis+cluster://` or `rediss+cluster://` (store/redis/clients.py). ValueError names a URL that
    cannot work.

    `owner` names this instance in reservations and heartbeats (default: a fresh
    `<hostname>-<pid>-<hex>`). Nothing connects until the first call.
    """
    check_url(url)
    owner = owner or instance_id()
    if is_redis(url):
        return RedisLedger(url, settings, owner)
    return MemoryLedger(settings, owner)
