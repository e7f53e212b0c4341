"""Idempotency keys for mutating admin calls (proxy/admin/api.py): a retried onboarding creates
nothing new.

The first call with a key runs and its answer is stored (24 h); a repeat with the same key and
the same body gets the stored answer; the same key with another body is 422; a repeat while the
first is still running is 409. Keys are scoped by method and path.

What is stored is versioned (`"v": VERSION` in the JSON). Releases before it stored the answer
verbatim, an issued API key included; such a record is never replayed (`Stored.version` says
which it is, and the API answers 409), while a replica of that release still reads this one's
records (it ignores the field), whose answers hold no secret.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Protocol

import orjson

from proxy.core.bounded import Bounded
from proxy.store.boundary import GuardedStore
from proxy.store.redis.clients import Client, store_client
from proxy.store.redis.errors import REDIS

TTL_S = 24 * 3600
PENDING_S = 60
MAX_ENTRIES = 10_000
"""memory://: keys held at most (the oldest dropped first)."""
MAX_BYTES = 16 * 1024 * 1024
"""memory://: bytes of answers held at most."""
ENTRY_BYTES = 256
"""What an entry costs besides its answer, roughly."""
PREFIX = "cy:v1:idem:"
VERSION = 2
"""The stored form: 2 keeps no secret (api.issued); a record without a version is a release's
before it, whose answer may hold an API key."""


@dataclass(frozen=True, slots=True)
class Stored:
    body_hash: str
    status: int
    answer: bytes | None
    """None while the first call is still running."""
    version: int = VERSION
    """Of the release that stored it: anything but VERSION is never replayed."""


class IdempotencyStore(Protocol):
    async def begin(self, key: str, body_hash: str) -> Stored | None:
        """Claim `key`; None if this call is the first, else what is stored."""
        ...

    async def finish(self, key: str, stored: Stored) -> None: ...

    async def abandon(self, key: str) -> None:
        """The first call failed: let a retry run it again."""
        ...

    async def close(self) -> None: ...


def slot(method: str, path: str, key: str) -> str:
    return hashlib.sha256(f"{method} {path} {key}".encode()).hexdigest()


def _encode(stored: Stored) -> bytes:
    return orjson.dumps(
        {
            "h": stored.body_hash,
            "s": stored.status,
            "a": None if stored.answer is None else stored.answer.decode(),
            "v": VERSION,
        }
    )


def _decode(raw: bytes) -> Stored:
    data = orjson.loads(raw)
    answer = None if data["a"] is None else data["a"].encode()
    return Stored(data["h"], data["s"], answer, data.get("v", 1))


class MemoryIdempotency:
    """One process's keys, at most MAX_ENTRIES of them holding MAX_BYTES, the oldest dropped
    first (a retry of a call whose key was dropped runs again)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._entries: Bounded[str, tuple[float, Stored]] = Bounded(
            max_entries, max_bytes, size=lambda entry: ENTRY_BYTES + len(entry[1].answer or b"")
        )

    async def begin(self, key: str, body_hash: str) -> Stored | None:
        now = time.monotonic()
        self._entries.drop_if(lambda entry: entry[0] <= now)
        held = self._entries.get(key)
        if held is not None:
            return held[1]
        self._entries.put(key, (now + PENDING_S, Stored(body_hash, 0, None)))
        return None

    async def finish(self, key: str, stored: Stored) -> None:
        self._entries.put(key, (time.monotonic() + TTL_S, stored))

    async def abandon(self, key: str) -> None:
        self._entries.pop(key)

    def __len__(self) -> int:
        return len(self._entries)

    async def close(self) -> None:
        return None


class RedisIdempotency(GuardedStore):
    """On the store's shared `client` (store/open.py), or on one of its own, closed with it."""

    boundary = REDIS
    store_name = "the Redis idempotency store"

    def __init__(self, url: str, *, client: Client | None = None) -> None:
        self._owns_client = client is None
        self._client: Client = store_client(url) if client is None else client

    async def begin(self, key: str, body_hash: str) -> Stored | None:
        claim = _encode(Stored(body_hash, 0, None))
        if await self._client.set(PREFIX + key, claim, nx=True, ex=PENDING_S):
            return None
        raw = await self._client.get(PREFIX + key)
        return None if raw is None else _decode(raw if isinstance(raw, bytes) else raw.encode())

    async def finish(self, key: str, stored: Stored) -> None:
        await self._client.set(PREFIX + key, _encode(stored), ex=TTL_S)

    async def abandon(self, key: str) -> None:
        await self._client.delete(PREFIX + key)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
