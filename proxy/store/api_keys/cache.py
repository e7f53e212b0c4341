"""Key lookups without a store round trip per request.

`Keys.lookup` answers from a bounded LRU: a known key for 60 s, an unknown one for 10 s (so a burst
of bad keys costs at most one store lookup per key per 10 s). Concurrent misses for one key share
one lookup. A change evicts the key at once: directly in this process, through `cy:v1:events` in
the others (see redis.py). A record is cached whatever its state; whether it may be used is
decided at every request (`KeyRecord.usable`), so a rotated key's grace ends on time.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from proxy.core import tasks
from proxy.store.api_keys.failures import Brake
from proxy.store.api_keys.records import KeyRecord, KeyStore, Records

POSITIVE_TTL_S = 60.0
NEGATIVE_TTL_S = 10.0
MAX_ENTRIES = 10_000


class _Lru:
    """sha → (deadline, record or None), oldest use first; bounded."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[float, KeyRecord | None]] = OrderedDict()

    def get(self, sha: str, now: float) -> tuple[bool, KeyRecord | None]:
        entry = self._entries.get(sha)
        if entry is None:
            return False, None
        if entry[0] <= now:
            del self._entries[sha]
            return False, None
        self._entries.move_to_end(sha)
        return True, entry[1]

    def put(self, sha: str, deadline: float, record: KeyRecord | None) -> None:
        self._entries[sha] = (deadline, record)
        self._entries.move_to_end(sha)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def pop(self, sha: str) -> None:
        self._entries.pop(sha, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class Keys:
    """A key store behind a cache, with the same operations: lookups are cached, changes go
    straight to the store (which evicts them here at once). What `Runtime.keys` holds."""

    def __init__(
        self,
        store: KeyStore,
        *,
        positive_ttl_s: float = POSITIVE_TTL_S,
        negative_ttl_s: float = NEGATIVE_TTL_S,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        failures: Brake | None = None,
    ) -> None:
        self.store = store
        self.failures = failures or Brake()
        """Failed authentications by address and key prefix (failures.py)."""
        self._ttl = {True: positive_ttl_s, False: negative_ttl_s}
        self._positive, self._negative = _Lru(max_entries), _Lru(max_entries)
        self._clock = clock
        self._inflight: dict[str, asyncio.Task[KeyRecord | Exception | None]] = {}
        self._generation = 0
        store.add_listener(self)

    async def create(self, tenant: str, **pins: str | None) -> tuple[str, KeyRecord]:
        return await self.store.create(tenant, **pins)

    async def list(self, tenant: str) -> Records:
        return await self.store.list(tenant)

    async def revoke(self, tenant: str, key_id: str) -> KeyRecord:
        return await self.store.revoke(tenant, key_id)

    async def rotate(self, tenant: str, key_id: str, grace_ms: int) -> tuple[str, KeyRecord]:
        return await self.store.rotate(tenant, key_id, grace_ms)

    async def revoke_all(self, tenant: str) -> int:
        return await self.store.revoke_all(tenant)

    def now_ms(self) -> int:
        """The store's clock, which also dates rotations' grace periods."""
        return self.store.now_ms()

    def cached(self, sha: str) -> tuple[bool, KeyRecord | None]:
        """(True, what the cache holds: the record, or None for a key known to be unknown), or
        (False, None) when the cache has no answer and only the store does."""
        now = self._clock()
        for lru in (self._positive, self._negative):
            hit, record = lru.get(sha, now)
            if hit:
                return True, record
        return False, None

    async def lookup(self, sha: str) -> KeyRecord | None:
        """The record for this SHA-256 (any state), or None for an unknown key."""
        hit, record = self.cached(sha)
        if hit:
            return record
        fetch = self._inflight.get(sha)
        if fetch is None:
            # A task of its own, so a caller that goes away does not cancel the others' answer.
            fetch = tasks.spawn(self._fetch(sha), name="key lookup")
            self._inflight[sha] = fetch
        answer = await asyncio.shield(fetch)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def _fetch(self, sha: str) -> KeyRecord | Exception | None:
        """The store's answer, or its error as a value (every caller waiting raises it)."""
        generation = self._generation
        try:
            record = await self.store.lookup(sha)
        except Exception as exc:
            return exc
        finally:
            del self._inflight[sha]
        # A change announced while the lookup was in flight may not be in its answer.
        if generation == self._generation:
            lru = self._positive if record is not None else self._negative
            lru.put(sha, self._clock() + self._ttl[record is not None], record)
        return record

    def evict(self, sha: str) -> None:
        self._generation += 1
        self._positive.pop(sha)
        self._negative.pop(sha)

    def clear(self) -> None:
        self._generation += 1
        self._positive.clear()
        self._negative.clear()

    async def watch(self) -> None:
        """Until cancelled: evict keys changed by other processes."""
        await self.store.follow(self)

    def __len__(self) -> int:
        return len(self._positive) + len(self._negative)
