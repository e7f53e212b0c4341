"""memory://'s due index: which tenants a sweep must visit, so that a pass never looks at the
idle ones (the Redis store's `cy:v1:due`, store/redis/layout.py).

A tenant is due when something of it expires: a reservation's deadline, a tombstone, a ledger
entry, a day of rollups past the history retention. Rather than hooking every write, the store
marks a tenant `touched` whenever an operation reaches it; a pass visits the touched tenants
and those whose indexed time has come, and after the visit indexes each at its earliest due time
again. A heap holds the indexed times; an entry superseded by an earlier one stays in the heap
until it surfaces and is skipped.
"""

from __future__ import annotations

import heapq


class DueIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._at: dict[str, int] = {}
        self._touched: set[str] = set()

    def touch(self, tenant: str) -> None:
        """An operation reached `tenant`: the next pass looks at it."""
        self._touched.add(tenant)

    def take(self, now_ms: int) -> list[str]:
        """The tenants to visit now (touched, or indexed at `now_ms` or earlier), in id order;
        each leaves the index until `put` brings it back."""
        found, self._touched = self._touched, set()
        while self._heap and self._heap[0][0] <= now_ms:
            at, tenant = heapq.heappop(self._heap)
            if self._at.get(tenant) == at:
                del self._at[tenant]
                found.add(tenant)
        return sorted(found)

    def put(self, tenant: str, at: int | None) -> None:
        """After a visit: index `tenant` at its earliest due time (None: nothing to expire). An
        earlier time it is already indexed at stays (the visit then comes early: harmless)."""
        self._touched.discard(tenant)
        if at is None or self._at.get(tenant, at + 1) <= at:
            return
        self._at[tenant] = at
        heapq.heappush(self._heap, (at, tenant))
