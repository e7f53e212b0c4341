"""The usage events' sender: one background task per proxy process (app.py `_usage_sender`).

It drains the store's outbox (store/ledger/outbox.py) in batches: reads up to BATCH entries,
turns them into CloudEvents (usage_events.py), hands the batch to every sink of the policy in
force, and acknowledges the entries (deleting them) only once every sink took it. A sink that
fails is retried with exponential backoff (RETRY_S, doubled up to MAX_RETRY_S) for as long as
it fails, and the batch waits: an outbox entry is deleted only after delivery, so a sink down
for an hour loses nothing; the outbox grows meanwhile. A sink that took a batch another sink
refused gets it again on the retry, and after a crash between delivery and acknowledgement
every sink gets it again: delivery is at least once, and consumers deduplicate by event
(`source`, `id`); `source` is the same in every process (DEFAULT_SOURCE or `events.source`).
A sink is known by its settings: a reload that adds or changes one while a batch waits gives
it the batch; a reload that removes every sink leaves the batch unacknowledged. A redirect is
a failure (alerts.post follows none).

Several processes on one store (replicas, `--workers`) elect one sender through the store
(`outbox_claim`: a lock with a TTL, renewed on each round); the others stand by. At start and
every RESCAN_S the sender reads every tenant's outbox, not only those indexed as holding
entries, which finds entries whose index write a crash cut off (outbox_redis.py).

At `events.max_pending` undelivered events, `cycles_events_pending` shows it and the alert
`events.backlog` fires (once until the outbox is back under the bound, and again, `dropping`
true, when events start being dropped; the size is read every
GAUGE_S, also while a batch waits for a failing sink). The calls go on. A tenant's Redis
outbox holds at most the bound: the settles go on without writing their events, counted
(`cycles_events_dropped`, logged; lua/outbox.lua). memory:// drops its oldest entries above
the bound (it is lost on restart anyway).

The task sets the ledger's `usage_events` from the policy in force, so a reload that adds or
removes every sink turns the outbox on or off for the sweeper's expiries too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from proxy.core.errors import LedgerError
from proxy.gateway.alerts import Alerts
from proxy.gateway.context import Runtime
from proxy.gateway.metrics import Metrics
from proxy.gateway.usage_events import cloud_event
from proxy.gateway.usage_sinks import deliver, kind
from proxy.policy.runtime import Sink
from proxy.store.ledger.base import Ledger, OutboxEntry

log = logging.getLogger(__name__)

BATCH = 500
POLL_S = 0.2
"""Wait between reads of an outbox found empty (or when not the sender)."""
RETRY_S = 0.5
MAX_RETRY_S = 5.0
CLAIM_MS = 20_000
"""How long the sender holds the store's outbox without renewing it: a sender that died is
replaced this long after. It renews before each delivery (at most alerts.TIMEOUT_S) and after
each wait (at most MAX_RETRY_S), so a live one keeps it."""
RESCAN_S = 3600.0
DEFAULT_SOURCE = "cycles-proxy"
"""The CloudEvents `source` without `events.source`: never the instance (module docstring)."""
GAUGE_S = 5.0
"""How often the outbox's size is read for the metric and the alert."""


class UsageSender:
    """Drains `ledger`'s outbox to the sinks of `runtime`'s policy (module docstring)."""

    def __init__(
        self,
        ledger: Ledger,
        runtime: Runtime,
        metrics: Metrics | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        self.ledger, self.runtime, self.owner = ledger, runtime, ledger.owner
        self.metrics, self.alerts = metrics, alerts
        self.retry_s = RETRY_S
        self._rescan_at = 0.0
        self._gauge_at = 0.0
        self._backlog = self._dropping = False
        self._dropped = 0
        self.configure()

    def configure(self) -> tuple[Sink, ...]:
        """Apply the policy in force to the ledger; its sinks."""
        events = self.runtime.policy.events
        self.ledger.usage_events = bool(events.sinks)
        self.ledger.outbox_bound = events.max_pending
        return events.sinks

    async def run(self) -> None:
        """Forever: one round, then a short wait when it found nothing to do."""
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    busy = await self.round(session)
                except LedgerError as exc:
                    log.warning("usage events: the outbox could not be read: %s", exc)
                    busy = False
                except Exception:  # the sender must outlive a bug: the events wait for it
                    log.exception("usage events: a round failed; retrying")
                    busy = False
                if not busy:
                    await asyncio.sleep(POLL_S)

    async def round(self, session: aiohttp.ClientSession) -> bool:
        """Deliver one batch; False when there was none (or another process sends)."""
        if not self.configure():
            return False  # entries written while events were on wait for a sink
        if not await self.ledger.outbox_claim(self.owner, CLAIM_MS):
            return False
        await self._watch_size()
        rescan = time.monotonic() >= self._rescan_at
        entries = await self.ledger.outbox_read(BATCH, rescan=rescan)
        if rescan:
            self._rescan_at = time.monotonic() + RESCAN_S
        if not entries:
            return False
        if await self.deliver(session, entries):
            await self.ledger.outbox_ack(entries)
        return True

    def source(self) -> str:
        """The CloudEvents `source`: the same in every process and after a restart, since a
        consumer deduplicates by (source, id) and a batch may be redelivered by another."""
        return self.runtime.policy.events.source or DEFAULT_SOURCE

    async def deliver(self, session: aiohttp.ClientSession, entries: Sequence[OutboxEntry]) -> bool:
        """Until every sink of the policy in force took the batch, retrying those that refused
        it; False (not to be acknowledged) when a reload left no sink. A sink is known by its
        settings: one a reload added or changed gets the batch, one it removed is not waited
        for."""
        source = self.source()
        events = [cloud_event(entry, source) for entry in entries]
        took: set[Sink] = set()
        delay = self.retry_s
        while waiting := [s for s in self.configure() if s not in took]:
            took |= {sink for sink in waiting if await self._to(session, sink, events)}
            if all(s in took for s in self.configure()):
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)
            await self._watch_size()
        return bool(self.configure())

    async def _to(
        self, session: aiohttp.ClientSession, sink: Sink, events: list[dict[str, Any]]
    ) -> bool:
        await self.ledger.outbox_claim(self.owner, CLAIM_MS)  # held while it waits on sinks
        problem = await deliver(session, sink, events)
        if problem is not None:
            log.warning("usage events: %d not delivered to %s: %s", len(events), sink, problem)
            if self.metrics is not None:
                self.metrics.events_failures.labels(kind(sink)).inc()
            return False
        if self.metrics is not None:
            self.metrics.events_sent.labels(kind(sink)).inc(len(events))
        return True

    async def _watch_size(self) -> None:
        """Now and then: the outbox's size into the gauge, and the backlog alert."""
        if time.monotonic() < self._gauge_at:
            return
        self._gauge_at = time.monotonic() + GAUGE_S
        pending, dropped = await self.ledger.outbox_pending(), await self.ledger.outbox_dropped()
        new, self._dropped = dropped - self._dropped, dropped
        if self.metrics is not None:
            self.metrics.events_pending.set(pending)
            self.metrics.events_dropped.inc(max(new, 0))
        if new > 0:
            log.error("usage events: %d dropped, their outbox at events.max_pending", new)
        bound = self.runtime.policy.events.max_pending
        backlog = pending >= bound
        dropping = backlog and (new > 0 or self._dropping)
        worse = (backlog and not self._backlog) or (dropping and not self._dropping)
        if worse and self.alerts is not None:
            suffix = "/dropping" if dropping else ""
            event: dict[str, object] = {"type": "events.backlog", "pending": pending}
            event |= {"id": f"events.backlog/{int(time.time())}{suffix}", "max_pending": bound}
            self.alerts.fire(event | {"dropping": dropping, "dropped": dropped})
        self._backlog, self._dropping = backlog, dropping
