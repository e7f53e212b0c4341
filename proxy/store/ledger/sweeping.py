"""What both stores' sweepers share: a pass has a time budget, and tenants are isolated.

A pass (`Ledger.sweep_all`) visits only the tenants its store's due index names (plus, on
Redis, a bounded slice of the tenant registry), each with bounded work, and stops starting new
work once its budget is spent: what is left is still due, and the next pass resumes it. A
tenant whose sweep fails, for whatever reason (a record the store cannot parse, an expiry that
would take a sum out of the safe range, a node of a cluster that does not answer), is logged,
counted in the ledger's `sweep_errors` (the app exports it as a metric) and skipped: the pass
goes on with the next tenant, and dead instances are still forgotten once their reservations
were reclaimed everywhere else. Within a tenant, one reservation whose expiry charge would leave
the safe range is left OPEN (nothing written), logged and counted the same way, and tried again
`STUCK_RETRY_MS` later; the tenant's other expiries go on. A dead owner's call stuck so is left
to its deadline the same way, and the owner is forgotten all the same: every open reservation
has a deadline, where a sweep resolves it whoever owns it, so a reclaim only comes early.

The heartbeat is not part of a pass: the app writes it from a task of its own (app.py), so no
sweep, however long, makes a live instance look dead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from proxy.core.errors import AmountOutOfRange, CyclesError

log = logging.getLogger(__name__)
T = TypeVar("T")

SWEEP_BUDGET_S = 1.0
"""How long one pass may go on starting new work (each step it starts is bounded itself)."""
BATCH = 200
"""Reservations, records scanned and entries dropped per script call: one call stays well under
50 ms of Redis time."""
TENANT_ROUNDS = 16
"""Script calls one tenant gets per pass; a tenant with more to do stays due for the next."""
STUCK_RETRY_MS = 60_000
"""How long a due reservation whose expiry charge would leave the safe range (it is left OPEN,
nothing written) waits before it is tried again; the tenant's other expiries go on meanwhile."""


@dataclass(slots=True)
class Budget:
    """The time one pass may take, on the monotonic clock."""

    ends: float

    @classmethod
    def of(cls, seconds: float) -> Budget:
        return cls(time.monotonic() + seconds)

    def left(self) -> bool:
        return time.monotonic() < self.ends


class SweepErrors:
    """Counts the tenants a sweep skipped because their sweep failed (each one logged)."""

    def __init__(self) -> None:
        self.sweep_errors = 0
        """Tenant sweeps that failed since this ledger was opened."""

    async def isolated(self, tenant: str, work: Awaitable[T]) -> T | None:
        """`work` for one tenant; if it fails, log and count it and return None."""
        try:
            return await work
        except CyclesError as exc:
            self.sweep_errors += 1
            log.error("sweeper: skipped tenant %s this pass: %s", tenant, exc)
        except Exception:  # whatever one tenant's data does, the pass goes on
            self.sweep_errors += 1
            log.exception("sweeper: skipped tenant %s this pass", tenant)
        return None

    def stuck(self, tenant: str, error: AmountOutOfRange | None) -> None:
        """A sweep of `tenant` left an expired reservation OPEN (`error`: its charge would take
        a sum out of the safe range) and went on with the rest: logged and counted like a
        failed tenant, each time it is tried."""
        if error is not None:
            self.sweep_errors += 1
            log.error(
                "sweeper: tenant %s: an expired reservation stays open, tried again later: %s",
                tenant,
                error,
            )
