"""A name → expiry map that hands out what is due in O(log n) per item: the memory store's
counterpart of a Redis sorted set (`:ledger_exp`, `:resv_exp`) read with ZRANGEBYSCORE.

A dict holds each name's current expiry; a min-heap of (expiry, name) finds the due ones in the
order Redis returns them (by score, then by name). Changing or removing a name leaves its old heap
entry behind; it is skipped when it surfaces (it no longer matches the dict), and the heap is
rebuilt from the dict once stale entries outnumber live ones, so memory stays proportional to
the names and each write costs O(log n) amortised. No operation walks the whole map: a reserve
costs the same with one run as with a hundred thousand.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, MutableMapping

_SLACK = 64
"""Stale heap entries tolerated beyond the live count before a rebuild."""


class ExpiryIndex(MutableMapping[str, int]):
    def __init__(self) -> None:
        self._at: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def __getitem__(self, name: str) -> int:
        return self._at[name]

    def __setitem__(self, name: str, at: int) -> None:
        if self._at.get(name) == at:
            return
        self._at[name] = at
        heapq.heappush(self._heap, (at, name))
        if len(self._heap) > 2 * len(self._at) + _SLACK:
            self._heap = [(when, key) for key, when in self._at.items()]
            heapq.heapify(self._heap)

    def __delitem__(self, name: str) -> None:
        del self._at[name]

    def get(self, name: str, default: int | None = None) -> int | None:  # type: ignore[override]
        return self._at.get(name, default)

    def discard(self, name: str) -> None:
        """Forget `name` if it is here (its heap entry goes stale)."""
        self._at.pop(name, None)

    def setdefault(self, name: str, at: int) -> int:
        current = self._at.get(name)
        if current is None:
            self[name] = at
            return at
        return current

    def keep(self, name: str, at: int) -> None:
        """Expire `name` at `at` or later: never earlier than it already does."""
        current = self._at.get(name)
        if current is None or current < at:
            self[name] = at

    def __iter__(self) -> Iterator[str]:
        return iter(self._at)

    def __len__(self) -> int:
        return len(self._at)

    def earliest(self) -> int | None:
        """The earliest expiry (None: empty), as ZRANGE 0 0 WITHSCORES reads it; stale heap
        entries on top are dropped on the way."""
        while self._heap and self._at.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: int, limit: int | None = None) -> list[tuple[int, str]]:
        """Remove and return up to `limit` (None: all) names expiring at or before `now`, as
        (expiry, name) in (expiry, name) order."""
        out: list[tuple[int, str]] = []
        while self._heap and self._heap[0][0] <= now and (limit is None or len(out) < limit):
            at, name = heapq.heappop(self._heap)
            if self._at.get(name) == at:  # else stale: changed or removed since it was pushed
                del self._at[name]
                out.append((at, name))
        return out
