"""The ledger: budgets reserved atomically before a call, settled after it.

`open_ledger` picks the store by URL scheme; `base.Ledger` is the interface the rest of the
proxy uses, and nothing outside this package imports a store directly.
"""

from __future__ import annotations

from proxy.ledger.base import Ledger
from proxy.ledger.clients import check_url, is_redis
from proxy.ledger.common import instance_id
from proxy.ledger.memory import MemoryLedger
from proxy.ledger.redis import RedisLedger
from proxy.policy.runtime import ReservationSettings

__all__ = ["Ledger", "MemoryLedger", "RedisLedger", "open_ledger"]


def open_ledger(url: str, settings: ReservationSettings, owner: str | None = None) -> Ledger:
    """The store for `url`: `memory://` (this process only), `redis://` or `rediss://`, or
    `redis+cluster://` or `rediss+cluster://` (ledger/clients.py). ValueError names a URL that
    cannot work.

    `owner` names this instance in reservations and heartbeats (default: a fresh
    `<hostname>-<pid>-<hex>`). Nothing connects until the first call.
    """
    check_url(url)
    owner = owner or instance_id()
    if is_redis(url):
        return RedisLedger(url, settings, owner)
    return MemoryLedger(settings, owner)
