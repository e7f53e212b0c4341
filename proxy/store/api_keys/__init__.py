"""Tenants' API keys for gateway mode (`identity: api_key`).

`open_key_store` picks the store by the same URL as the ledger; `Keys` puts a cache in front of
it for `proxy.gateway.identity`. Nothing here knows HTTP.
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.store.api_keys.cache import Keys
from proxy.store.api_keys.failures import Brake, Failures
from proxy.store.api_keys.memory import MemoryKeyStore
from proxy.store.api_keys.records import (
    PINNABLE,
    PLAIN,
    KeyNotFound,
    KeyRecord,
    KeyStore,
    Listener,
    digest,
    now_ms,
)
from proxy.store.api_keys.redis import RedisKeyStore
from proxy.store.redis.clients import check_url, is_redis

__all__ = [
    "PINNABLE",
    "PLAIN",
    "Brake",
    "Failures",
    "KeyNotFound",
    "KeyRecord",
    "KeyStore",
    "Keys",
    "Listener",
    "MemoryKeyStore",
    "RedisKeyStore",
    "digest",
    "open_key_store",
]


def open_key_store(url: str, clock: Callable[[], int] = now_ms) -> KeyStore:
    """The key store for a store URL: `memory://` or a Redis one, standalone or cluster
    (store/redis/clients.py). Nothing connects until the first call."""
    check_url(url)
    if is_redis(url):
        return RedisKeyStore(url, clock)
    return MemoryKeyStore(clock)
