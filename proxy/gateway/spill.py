"""fail_mode: open, made safer: a local rate limit while the ledger is down, and a spill of what
unbudgeted calls cost, written to the ledger once it is reachable again.

While the ledger cannot be reached, a call forwarded unbudgeted first takes a token from its
tenant's local bucket (capacity: the plan's requests_per_minute, else `DEFAULT_PER_MINUTE`,
refilled at that rate), so a runaway tenant is still slowed: beyond it the call is refused with
429 `ledger_down_rate`. Each bucket is per process (N replicas admit up to N times the rate).

The call's actual charge, known at settle, goes into the in-process spill. A background task
(`drain_forever`) writes each spilled call to the ledger when it answers again: a shadow
reserve of the call as asked, under the call's own reservation id and without quotas, then a
commit of the charge (two round trips). Both are idempotent by that id, so a retry after a
partial failure never charges twice. The period charged is the one current when the spill is
written. A commit or release of a real reservation that fails because the ledger is unreachable is
spilled too, and retried the same way (one round trip, idempotent by the reservation id).
A reserve the proxy gave up on (no answer in time) may still have run, or run later, in the
store: a call refused for it (503, or 429 `ledger_down_rate`) spills a release of its id (unless
the reserve surely never reached the store: LedgerUnavailable.maybe_ran), and a
call forwarded unbudgeted reconciles by its id when its charge is written (the shadow reserve
finds the record and the commit settles it) or, when it ends without a charge, by a release of
its id. Either way the reservation never stays open, is never charged, and frees its
concurrency. The spill lives in memory only: it is lost if the process dies before it drains.

Spilled commits announce the thresholds they cross (`on_commit`: Alerts.on_commit). When the
ledger's epoch is lost (`store_lost`; also how `on_store_lost: shadow` forwards), nothing is ever
written to that store: the spill and every later spilled charge are dropped, each logged at ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from proxy.core.bounded import Bounded
from proxy.core.errors import LedgerEpochLost, LedgerError, LedgerUnavailable
from proxy.core.types import MAX_AMOUNT
from proxy.gateway.usage_events import relined
from proxy.store.ledger.base import (
    Candidate,
    Ledger,
    Quotas,
    Reservation,
    ReserveRequest,
    SettleResult,
)

log = logging.getLogger(__name__)

DEFAULT_PER_MINUTE = 60
"""A tenant's local rate while the ledger is down, when its plan sets no requests_per_minute."""
MAX_BUCKETS = 10_000
"""Tenants' local buckets kept at most, the ones used last."""
SPILL_LIMIT = 100_000
"""Spilled calls kept at most; beyond, the oldest are dropped (and logged)."""
OnCommit = Callable[[Reservation, SettleResult], None]
"""What sees each spilled commit's result (Alerts.on_commit)."""
DRAIN_EVERY = 1.0
"""Seconds between attempts to write the spill while it is not empty."""


class Buckets:
    """Per-tenant token buckets, used only while the ledger is unreachable; the `max_tenants`
    used last are kept (a tenant whose bucket was dropped starts again from a full one)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_tenants: int = MAX_BUCKETS
    ) -> None:
        self._clock = clock
        self._state: Bounded[str, tuple[float, float]] = Bounded(max_tenants)
        """tenant -> (tokens, when last refilled)."""

    def __len__(self) -> int:
        return len(self._state)

    def take(self, tenant: str, per_minute: int | None) -> float:
        """Take one token: 0.0 when admitted, else the seconds until one is available."""
        capacity = float(per_minute or DEFAULT_PER_MINUTE)
        rate = capacity / 60.0
        now = self._clock()
        tokens, then = self._state.get(tenant) or (capacity, now)
        tokens = min(capacity, tokens + (now - then) * rate)
        if tokens >= 1.0:
            self._state.put(tenant, (tokens - 1.0, now))
            return 0.0
        self._state.put(tenant, (tokens, now))
        return (1.0 - tokens) / rate


def abandoned(tenant: str, reservation_id: str) -> Reservation:
    """A release by id alone: the ledger settles a record it has from the record (its amounts,
    lines and concurrency), and one it does not have by these (nothing), leaving a tombstone."""
    return Reservation(tenant, reservation_id, (), {})


@dataclass(frozen=True, slots=True)
class Unbudgeted(Reservation):
    """Stands in for the reservation a call forwarded unbudgeted did not get: settling it
    spills the charge instead of calling the ledger."""

    request: ReserveRequest | None = None
    spill: Spill | None = None


@dataclass(slots=True)
class Spill:
    limit: int = SPILL_LIMIT
    _entries: deque[tuple[ReserveRequest | Reservation, dict[str, int] | None, str | None]] = field(
        default_factory=deque
    )
    """What to write, the charge (None: a release), the call's usage event (usage_events.py)."""
    dropped: int = 0
    """Spilled calls dropped: over `limit`, refused by the ledger, or the store's epoch lost."""
    lost: bool = False
    """The ledger's epoch is lost (`store_lost`): nothing is written to that store any more."""

    def __len__(self) -> int:
        return len(self._entries)

    def stand_in(self, request: ReserveRequest) -> Unbudgeted:
        """The reservation an unbudgeted call settles against."""
        return Unbudgeted(
            request.tenant, request.reservation_id, (), {}, request=request, spill=self
        )

    def add(
        self, request: ReserveRequest, charge: Mapping[str, int], event: str | None = None
    ) -> None:
        """An unbudgeted call's charge (and its usage event, written with it)."""
        self._append(request, charge, event)

    def add_settle(
        self, reservation: Reservation, charge: Mapping[str, int] | None, event: str | None = None
    ) -> None:
        """A commit (or, with None, a release) the ledger could not take."""
        self._append(reservation, charge, event)

    def add_abandoned(self, request: ReserveRequest) -> None:
        """A reserve the proxy gave up on (the ledger did not answer in time; its script may
        have run, or may still run) for a call that is not forwarded: a release of its id, which
        frees whatever the store holds under it (the record's own amounts and concurrency) or,
        when the reserve has not run yet, leaves a tombstone that makes it reserve nothing."""
        self._append(abandoned(request.tenant, request.reservation_id), None)

    def store_lost(self) -> None:
        """The ledger's store was flushed or replaced: its epoch will never come back in this
        process, so what the spill holds is dropped, each logged at ERROR with its charge (the
        log is the record to reconcile from), and so is every later spill."""
        self.lost = True
        while self._entries:
            what, charge, _ = self._entries.popleft()
            self._lose(what, charge)

    def _lose(self, what: ReserveRequest | Reservation, charge: Mapping[str, int] | None) -> None:
        self.dropped += 1
        log.error(
            "spill: the ledger's epoch is lost; not written: tenant=%s reservation=%s charge=%s",
            what.tenant,
            what.reservation_id if isinstance(what, ReserveRequest) else what.id,
            dict(charge) if charge is not None else "release",
        )

    def _append(
        self,
        what: ReserveRequest | Reservation,
        charge: Mapping[str, int] | None,
        event: str | None = None,
    ) -> None:
        if self.lost:
            self._lose(what, charge)
            return
        if len(self._entries) >= self.limit:
            old, lost, _ = self._entries.popleft()
            self.dropped += 1
            log.error("spill full: dropped tenant=%s charge=%s", old.tenant, lost)
        capped = None if charge is None else {u: min(a, MAX_AMOUNT - 1) for u, a in charge.items()}
        self._entries.append((what, capped, event))

    async def drain(self, ledger: Ledger, on_commit: OnCommit | None = None) -> int:
        """Write spilled calls, oldest first, until done or the ledger fails; how many went.
        `on_commit` sees each commit's result (Alerts.on_commit: thresholds crossed)."""
        written = 0
        while self._entries and not self.lost:
            request, charge, event = self._entries[0]
            try:
                committed: tuple[Reservation, SettleResult] | None = None
                if isinstance(request, ReserveRequest):
                    assert charge is not None
                    committed = await _write(ledger, request, charge, event)
                elif charge is None:
                    await ledger.release(request, event=event)
                else:
                    committed = request, await ledger.commit(request, charge, event=event)
                if committed is not None and on_commit is not None:
                    on_commit(*committed)
            except LedgerEpochLost:
                self.store_lost()
                break
            except LedgerUnavailable:
                break
            except LedgerError as exc:
                self.dropped += 1
                log.error(
                    "spill: the ledger refused tenant=%s charge=%s: %s",
                    request.tenant,
                    charge,
                    exc,
                )
            else:
                written += 1
            self._entries.popleft()
        if written:
            log.warning("spill: wrote %d unbudgeted calls' charges to the ledger", written)
        return written

    async def drain_forever(
        self, ledger: Ledger, every: float | None = None, on_commit: OnCommit | None = None
    ) -> None:
        """Write the spill every `every` seconds while it holds anything (default: DRAIN_EVERY
        as it is when the loop starts, which a test may lengthen to leave the spill for the
        flush at shutdown)."""
        every = DRAIN_EVERY if every is None else every
        while True:
            if self._entries:
                await self.drain(ledger, on_commit)
            await asyncio.sleep(every)


async def _write(
    ledger: Ledger, request: ReserveRequest, charge: Mapping[str, int], event: str | None
) -> tuple[Reservation, SettleResult]:
    """One spilled call: a shadow reserve of the call as asked under its own id, no quotas, no
    version check; then the commit. Repeating either after a failure changes nothing twice."""
    asked = request.candidates[0]
    shadow = ReserveRequest(
        tenant=request.tenant,
        reservation_id=request.reservation_id,
        lines=request.lines,
        candidates=[Candidate(asked.amounts, name=asked.name)],
        shadow=True,
        replay=True,
        quotas=Quotas(),
        utc_offset_min=request.utc_offset_min,
        alerts=request.alerts,
        scope=request.scope,
    )
    result = await ledger.reserve(shadow)
    if result.reservation is None:
        raise LedgerError(f"nothing reserved (tenant status {result.status})")
    held = result.reservation
    event = None if event is None else relined(event, held.fields)
    return held, await ledger.commit(held, charge, event=event)


@dataclass(slots=True)
class FailOpen:
    """What a process keeps for fail_mode: open."""

    buckets: Buckets = field(default_factory=Buckets)
    spill: Spill = field(default_factory=Spill)
