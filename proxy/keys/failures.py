"""A brake on clients that keep failing to authenticate, which never touches a valid key.

A request's key is checked first: a valid one is served whatever anyone else did (behind a NAT
or an ingress every tenant shares a few addresses). Only a failed authentication consults the
brake: past `limit` failures a minute from the same client address (proxy/peers.py), or with the
same key prefix (`ck-` and the next 6 characters: a revoked or leaked key retried from many
addresses), the failure is answered 429 with Retry-After instead of 401, and counted too, so a
client that keeps going stays braked. Keys carry about 190 random bits, so guessing one is not
the danger: the brake tells a misbehaving client to stop, and keeps its failures from being
mistaken for other tenants'.

Each table is bounded: at most `max_entries` keys (the least recently failed is forgotten
first) and at most `limit` failure times per key; a key whose failures have all left the window
is dropped when next looked at. One table for addresses and one for prefixes, so neither can
push the other's entries out.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from proxy.keys.records import PREFIX, SHOWN_CHARS

LIMIT = 20
WINDOW_S = 60.0
MAX_ENTRIES = 10_000


class Failures:
    """Failures per key (an address, a key prefix) over a sliding window; bounded."""

    def __init__(
        self,
        limit: int = LIMIT,
        window_s: float = WINDOW_S,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window_s = limit, window_s
        self._max_entries, self._clock = max_entries, clock
        self._entries: OrderedDict[str, deque[float]] = OrderedDict()

    def blocked_for(self, who: str) -> int:
        """Whole seconds until `who` is below the limit again; 0 when it is now."""
        times = self._recent(who)
        if len(times) < self.limit:
            return 0
        return max(1, math.ceil(times[0] + self.window_s - self._clock()))

    def record(self, who: str) -> None:
        times = self._entries.get(who)
        if times is None:
            times = self._entries[who] = deque(maxlen=self.limit)
        times.append(self._clock())
        self._entries.move_to_end(who)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def held(self) -> int:
        """Failure times held, over every entry (for tests of the bound)."""
        return sum(len(times) for times in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def _recent(self, who: str) -> deque[float]:
        times = self._entries.get(who)
        if times is None:
            return deque()
        cutoff = self._clock() - self.window_s
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._entries[who]
        return times


class Brake:
    """The two tables: client addresses and key prefixes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.addresses = Failures(clock=clock)
        self.prefixes = Failures(clock=clock)

    def failed(self, address: str, plain: str | None) -> int:
        """Count a failed authentication; the seconds the client should wait (0: answer 401).
        The wait is judged on the failures before this one: the 21st in a minute is refused."""
        prefix = None if plain is None else prefix_of(plain)
        wait = self.addresses.blocked_for(address)
        if prefix is not None:
            wait = max(wait, self.prefixes.blocked_for(prefix))
            self.prefixes.record(prefix)
        self.addresses.record(address)
        return wait


def prefix_of(plain: str) -> str:
    """What a listing shows of a key: `ck-` and its next characters."""
    return plain[: len(PREFIX) + SHOWN_CHARS]
