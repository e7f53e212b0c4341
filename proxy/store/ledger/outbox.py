"""The usage-event outbox: what the ledger's settles leave for the sender to deliver.

Every settle that changes the ledger (a commit, a release, an expiry made by the sweeper) adds
one entry in the same atomic step when `usage_events` is on (lua/outbox.lua on Redis; the
memory store's twin below), and a repeat adds none. The sender (gateway/usage_sender.py) reads
entries in store order, delivers them, and acknowledges them (`outbox_ack`), which deletes
them: delivery is at least once, and nothing is lost on a crash between the settle and the
delivery. Redis keeps one stream per tenant (outbox_redis.py); memory:// keeps one bounded
queue in the process, lost with it (a memory ledger's spend is lost the same way).

Entry fields (strings, as lua/outbox.lua writes them): `kind` settle | expire, `reservation`,
`id` (a settle's event id, `event_id`),
`charged` (what the settle added to spent, amounts form: may be negative for a commit after an
expiry charge; '-' for a release), and `event` (settle: the proxy's JSON of the call) or
`fields` and `owner` (expire: the record's field prefixes, ',' separated).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_BOUND = 1_000_000
"""Entries the outbox holds before it counts as backed up (policy `events.max_pending`)."""


def event_id(reservation: str, state: str, now_ms: int) -> str:
    """A settle's event id, from the state it found (lua/outbox.lua's event_id): the
    reservation id, but a charge after a release or of a record the store no longer has is a
    distinct charge, with an id of its own."""
    if state == "RELEASED":
        return f"{reservation}.after-release"
    return f"{reservation}.missing.{now_ms}" if state == "MISSING" else reservation


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    tenant: str
    entry_id: str
    """The entry's id in its tenant's outbox (a stream id on Redis)."""
    fields: Mapping[str, str]


class Outbox(Protocol):
    usage_events: bool
    """Settles and expiries add entries (set by the app: the policy names a sink)."""
    outbox_bound: int
    """The policy's `events.max_pending`: memory:// drops its oldest entries above it, Redis
    adds none to a tenant's outbox holding that many (lua/outbox.lua)."""

    async def outbox_read(self, count: int, *, rescan: bool = False) -> list[OutboxEntry]:
        """Up to `count` entries, oldest first per tenant. The tenants read are those indexed
        as holding entries; `rescan` also reads every tenant the store knows (after a crash
        between a settle and its index write)."""
        ...

    async def outbox_ack(self, entries: Sequence[OutboxEntry]) -> None:
        """Delete delivered entries."""
        ...

    async def outbox_pending(self) -> int:
        """Entries not yet acknowledged (of indexed tenants)."""
        ...

    async def outbox_dropped(self) -> int:
        """Events not written because the outbox was at its bound (`outbox_bound`), since the
        store began (of indexed tenants, on Redis: a tenant at its bound stays indexed)."""
        ...

    async def outbox_claim(self, owner: str, ttl_ms: int) -> bool:
        """Whether `owner` is (now, or still) the one sender of the store for `ttl_ms`."""
        ...


class MemoryOutbox:
    """memory://'s outbox, mixed into MemoryLedger: one queue, bounded by `outbox_bound` (the
    oldest entry is dropped, counted in `dropped` and logged)."""

    def __init__(self) -> None:
        super().__init__()
        self.usage_events = False
        self.outbox_bound = DEFAULT_BOUND
        self.dropped = 0
        self._outbox: deque[OutboxEntry] = deque()
        self._outbox_seq = 0

    def outbox_add(self, tenant: str, fields: Mapping[str, str]) -> None:
        """Add an entry (the settle's own step: nothing awaits in between)."""
        if len(self._outbox) >= self.outbox_bound:
            lost = self._outbox.popleft()
            self.dropped += 1
            log.error(
                "usage event of reservation=%s dropped: the memory outbox holds %d events "
                "(events.max_pending); its sinks are not taking them",
                lost.fields.get("reservation"),
                self.outbox_bound,
            )
        self._outbox_seq += 1
        entry_id = f"{int(time.time() * 1000)}-{self._outbox_seq}"  # as a stream id
        self._outbox.append(OutboxEntry(tenant, entry_id, dict(fields)))

    async def outbox_read(self, count: int, *, rescan: bool = False) -> list[OutboxEntry]:
        return [self._outbox[i] for i in range(min(count, len(self._outbox)))]

    async def outbox_ack(self, entries: Sequence[OutboxEntry]) -> None:
        # A batch is read off the front and entries are added at the back, so what is left of
        # it (the bound may have dropped some meanwhile) is still at the front.
        done = {e.entry_id for e in entries}
        while self._outbox and self._outbox[0].entry_id in done:
            self._outbox.popleft()

    async def outbox_pending(self) -> int:
        return len(self._outbox)

    async def outbox_dropped(self) -> int:
        return self.dropped

    async def outbox_claim(self, owner: str, ttl_ms: int) -> bool:
        return True
