"""A table held in the proxy's own memory with a bound: at most `max_entries` entries and
`max_bytes` bytes, the oldest dropped first.

Whatever the proxy keeps in process that grows with what clients send (idempotency answers,
rate buckets, caches) has a bound, so a client can never make the process grow without end:
README's *Bounds* lists every one. "Oldest" is the order of `put`: writing an entry again makes
it the newest. A value larger than the whole table is not stored at all.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Bounded(Generic[K, V]):
    """A dict with a bound in entries and in bytes (`size(value)`, an estimate of what the
    entry holds); `on_drop` sees each entry dropped to keep within it."""

    def __init__(
        self,
        max_entries: int,
        max_bytes: int | None = None,
        size: Callable[[V], int] = lambda _: 0,
        on_drop: Callable[[K, V], None] | None = None,
    ) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._size, self._on_drop = size, on_drop
        self._entries: dict[K, V] = {}
        self.bytes = 0
        """What the entries held hold, by `size`."""

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> bool:
        """Store `value` as the newest entry, dropping the oldest ones beyond the bound. False,
        and `key` holds nothing, when the value alone is larger than `max_bytes`."""
        self.pop(key)
        size = self._size(value)
        if self.max_bytes is not None and size > self.max_bytes:
            return False
        self._entries[key] = value
        self.bytes += size
        while len(self._entries) > self.max_entries or (
            self.max_bytes is not None and self.bytes > self.max_bytes
        ):
            self._drop(next(iter(self._entries)))
        return True

    def pop(self, key: K) -> V | None:
        value = self._entries.pop(key, None)
        if value is not None:
            self.bytes -= self._size(value)
        return value

    def drop_if(self, stale: Callable[[V], bool]) -> int:
        """Drop every entry `stale` says is; returns how many."""
        gone = [key for key, value in self._entries.items() if stale(value)]
        for key in gone:
            self.pop(key)
        return len(gone)

    def _drop(self, key: K) -> None:
        value = self.pop(key)
        if value is not None and self._on_drop is not None:
            self._on_drop(key, value)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)
