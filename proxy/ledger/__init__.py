"""The ledger: budgets reserved atomically before a call, settled after it.

`open_ledger` picks the store by URL scheme; `base.Ledger` is the interface the rest of the
proxy uses, and nothing outside this package imports a store directly.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from proxy.ledger.base import Ledger
from proxy.ledger.common import instance_id
from proxy.ledger.memory import MemoryLedger
from proxy.ledger.redis import RedisLedger
from proxy.policy.runtime import ReservationSettings

__all__ = ["Ledger", "MemoryLedger", "RedisLedger", "open_ledger"]


def open_ledger(url: str, settings: ReservationSettings, owner: str | None = None) -> Ledger:
    """The store for `url`: `memory://` (this process only), `redis://` or `rediss://`.

    `owner` names this instance in reservations and heartbeats (default: a fresh
    `<hostname>-<pid>-<hex>`). Nothing connects until the first call.
    """
    scheme = urlsplit(url).scheme
    owner = owner or instance_id()
    if scheme == "memory":
        return MemoryLedger(settings, owner)
    if scheme in ("redis", "rediss"):
        return RedisLedger(url, settings, owner)
    if scheme == "redis+cluster":
        raise ValueError("store URL redis+cluster:// is not yet supported; use redis://host:port")
    raise ValueError(
        f"unknown store URL scheme {scheme!r}: use memory://, redis://host:port/db or rediss://"
    )
