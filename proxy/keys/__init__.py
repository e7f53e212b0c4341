"""Tenants' API keys for gateway mode (`identity: api_key`).

`open_key_store` picks the store by the same URL as the ledger; `Keys` puts a cache in front of
it for `proxy.identity`. Nothing here knows HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from proxy.keys.cache import Failures, Keys
from proxy.keys.memory import MemoryKeyStore
from proxy.keys.records import (
    PLAIN,
    KeyNotFound,
    KeyRecord,
    KeyStore,
    Listener,
    digest,
    now_ms,
)
from proxy.keys.redis import RedisKeyStore

__all__ = [
    "PLAIN",
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
    """The key store for a store URL: `memory://`, `redis://` or `rediss://`. Nothing connects
    until the first call."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryKeyStore(clock)
    if scheme in ("redis", "rediss"):
        return RedisKeyStore(url, clock)
    raise ValueError(f"unknown store URL scheme {scheme!r}: use memory://, redis:// or rediss://")
