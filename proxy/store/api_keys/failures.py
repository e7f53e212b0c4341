"""A brake on clients that keep failing to authenticate, which never refuses a valid key for
others' failures alone.

A request's key is checked first: a valid one in the key cache is served whatever anyone else
did (behind a NAT or an ingress every tenant shares a few addresses). A failed authentication
consults the brake: past `limit` failures a minute from the same client address
(proxy/core/peers.py; an IPv6 client by its /64), or with the same key prefix (`ck-` and the next 6
characters: a revoked or leaked key retried from many addresses), the failure is answered 429
with Retry-After instead of 401, and counted too, so a client that keeps going stays braked.

A braked address also gets its keys looked up in the store at a pace (`Pace`): one lookup of a
key the cache does not hold at a time, which holds the address's slot for `lookup_interval_s`.
A valid key is answered as soon as it is found; a key that proves unknown is answered (429)
only when the slot's interval is over, so a client that waits for its answers finds the slot
free again. A request that finds the slot held is 429 at once, with no lookup, whether its key
is valid or not. So a braked address learns whether a key is valid at one key a second at most,
and costs the store no more, while a valid key from it (another tenant behind the same NAT) is
still served, at once when nobody is guessing there at that moment.

Each table is bounded: at most `max_entries` keys (the least recently failed or paced is
forgotten first) and at most `limit` failure times per key; a key whose failures have all left
the window is dropped when next looked at. One table for addresses and one for prefixes, so
neither can push the other's entries out.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from proxy.store.api_keys.records import PREFIX, SHOWN_CHARS

LIMIT = 20
WINDOW_S = 60.0
MAX_ENTRIES = 10_000
LOOKUP_INTERVAL_S = 1.0
"""A braked address gets one store lookup of a key not in the cache per interval."""


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


class Pace:
    """One store lookup at a time per key (a braked address), each holding its slot for an
    interval; bounded in keys like Failures."""

    def __init__(
        self,
        interval_s: float = LOOKUP_INTERVAL_S,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s, self._max_entries, self._clock = interval_s, max_entries, clock
        self._free_at: OrderedDict[str, float] = OrderedDict()

    def take(self, who: str) -> float | None:
        """Take `who`'s slot if it is free: the (clock) time it is held until; None when
        another request holds it."""
        now = self._clock()
        if now < self._free_at.get(who, now):
            return None
        until = self._free_at[who] = now + self.interval_s
        self._free_at.move_to_end(who)
        while len(self._free_at) > self._max_entries:
            self._free_at.popitem(last=False)
        return until

    def left(self, until: float) -> float:
        """Seconds from now until `until` (0 once it has passed)."""
        return max(0.0, until - self._clock())

    def retry_after(self, who: str) -> int:
        """Whole seconds until `who`'s slot is free (at least 1)."""
        return max(1, math.ceil(self.left(self._free_at.get(who, 0.0))))

    def __len__(self) -> int:
        return len(self._free_at)


class Brake:
    """The two tables, client addresses and key prefixes, and the pace of a braked address's
    store lookups."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        lookup_interval_s: float = LOOKUP_INTERVAL_S,
    ) -> None:
        self.addresses = Failures(clock=clock)
        self.prefixes = Failures(clock=clock)
        self.lookups = Pace(lookup_interval_s, clock=clock)

    def take_lookup(self, address: str) -> float | None:
        """Before looking up a key the cache does not hold: the time until which a failure it
        turns out to be must be held before it is answered (0: the address is not braked, answer
        at once), or None to refuse it without a lookup (braked, and its slot is taken)."""
        if not self.addresses.blocked_for(address):
            return 0.0
        return self.lookups.take(address)

    def refused(self, address: str, plain: str | None) -> int:
        """A request take_lookup refused: counted as a failure; the seconds to wait."""
        self.failed(address, plain)
        return self.lookups.retry_after(address)

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
