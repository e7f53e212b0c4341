"""Tenants' API keys for gateway mode (`identity: api_key`).

`proxy.store.open.open_store` opens the key store with the ledger, on the same URL; `Keys` puts a
cache in front of it for `proxy.gateway.identity`. Nothing here knows HTTP.
"""

from __future__ import annotations

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
)
from proxy.store.api_keys.redis import RedisKeyStore

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
]
