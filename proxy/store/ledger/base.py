"""The ledger interface: reserve on every budgeted scope or none, then commit or release.

Both stores (`memory.py`, `redis.py`) implement `Ledger` with identical semantics; one contract
suite (tests/store/test_ledger_contract.py) runs against each. Amounts are integers in the unit of
the budget line they apply to (USD in 10**-8 dollars; TOKENS and the action units, RISK_POINTS or
an operator's such as EMAILS, as counts).

Per scope line and period the store keeps `spent`, `reserved` and `credit`;
`remaining = limit + credit - spent - reserved` and debt `max(0, -remaining)` are derived.

A reservation is OPEN until it becomes COMMITTED, RELEASED, EXPIRED_CHARGED or
EXPIRED_RELEASED. Its record holds the resolved lines with their period ids, so a call reserved
on 30 November commits to November. Settling twice is idempotent (the second call returns the
first outcome); a commit after EXPIRED_CHARGED applies only `actual - estimate` to each line
that still holds the expiry charge (a line reset since gets only what exceeds the estimate); a
commit for a reservation the store no longer has (MISSING: its tombstone expired, or the store
lost it) charges its actual amount and frees nothing: what it reserved and the concurrency it
held were settled at its expiry or lost with the store, and may be other calls' now (an expiry
charge may so be recorded twice: over, never under). Reserving is idempotent by reservation id:
a repeat that finds the reservation settled says so (`ReserveResult.settled`) and is not
allowed, since nothing is held for it now. A release of an id alone (no lines, no amounts) frees
what the store holds under it, or leaves a tombstone that makes a reserve of that id arriving
later reserve nothing: how a reserve the caller gave up on is undone (gateway/spill.py).

Invariants every store keeps on every line, after any sequence of reserve, commit, release,
expiry, sweep, RESET_SPENT, credit, debit, time-zone and anchor changes and clock jumps
(tests/store/test_lifecycle_machine.py checks them after every step, on both stores):

    0 <= spent                  no refund takes a line below zero
    0 <= reserved = the sum of the OPEN reservations' estimates on the line
    remaining <= limit + credit (follows: nothing is handed out beyond the limit)
    spent = what was charged since the line's last RESET_SPENT: each commit its actual amount,
            each expiry charge its estimate, a commit after an expiry charge the difference --
            or, when a reset came between them (it wiped the estimate), only what exceeds it

A reset is recorded as a generation (`q|gen|…`, lua/common.lua late_charge), so a late commit
knows whether its expiry charge is still on each line; ids and clocks play no part in that.

Quota counters (concurrency, runs per day, steps per run, request and token rates) live beside
the budget entries under `q|…` fields; `balances()` does not show them.

The types the interface takes and gives are in request.py (what a reserve asks) and results.py
(what the ledger answers and keeps); this module re-exports them with the interface. What only
tests do to a store (set a tenant's status or clock, sweep one tenant, read raw counters) is not
part of it: tests/hooks_support.py reaches the stores' internals for that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from proxy.store.ledger.outbox import Outbox, OutboxEntry
from proxy.store.ledger.request import (
    ALWAYS,
    Amounts,
    BudgetLine,
    Candidate,
    Condition,
    Fit,
    Quotas,
    ReserveRequest,
)
from proxy.store.ledger.results import (
    AlertLimits,
    BalanceRow,
    Crossing,
    DayRollup,
    ExpiryAlerts,
    LineBalance,
    LineState,
    Reservation,
    ReservationRecord,
    ReserveResult,
    SettleResult,
    State,
    TenantStatus,
)

__all__ = [
    "ALWAYS",
    "AlertLimits",
    "Amounts",
    "BalanceRow",
    "BudgetLine",
    "Candidate",
    "Condition",
    "Crossing",
    "DayRollup",
    "ExpiryAlerts",
    "Fit",
    "Ledger",
    "LineBalance",
    "LineState",
    "Outbox",
    "OutboxEntry",
    "Quotas",
    "Reservation",
    "ReservationRecord",
    "ReserveRequest",
    "ReserveResult",
    "SettleResult",
    "State",
    "TenantStatus",
]


class Ledger(Outbox, Protocol):
    owner: str
    """This instance, as its reservations and heartbeats name it."""
    expiry_alerts: ExpiryAlerts | None
    """Set by the app: charges the sweep makes for expired reservations alert like commits."""
    sweep_errors: int
    """Tenants a sweep skipped because their sweep failed, since the ledger was opened (each is
    logged; the app exports the count as cycles_sweeper_tenant_errors_total)."""

    async def connect(
        self, *, require_noeviction: bool = False, user_ids: str | None = None
    ) -> None:
        """Check, once at start, that the store is safe to keep a ledger in (Redis: its
        eviction policy; its epoch, which `heartbeat` then watches). Raises StoreUnsafe when
        `require_noeviction` and the store may evict keys, or when `user_ids` (the fingerprint
        of the secret end-user ids are hashed with, budget/end_users.py) differs from the one
        the store recorded first: replicas hashing with different secrets would keep one user
        under two ids, each with its own budget."""
        ...

    async def reserve(self, request: ReserveRequest) -> ReserveResult:
        """Check tenant status and every line; reserve the first candidate that fits all lines,
        on all of them, atomically, or nothing."""
        ...

    async def commit(
        self,
        reservation: Reservation,
        actual: Amounts,
        *,
        final_release: bool = False,
        known_only: bool = False,
        event: str | None = None,
    ) -> SettleResult:
        """Charge what the provider reported (even above the estimate) and free the reservation.
        With `final_release`, a reservation already RELEASED or EXPIRED_RELEASED is not charged:
        nothing changes and the result says so (an action's release, once answered, is final,
        and so is its release at expiry). A reservation the store does not have (MISSING) is
        charged `actual` and nothing else is freed; with `known_only` nothing is written and the
        result says MISSING (the actions API: an id the store does not know is not found).
        `event` (the usage event's JSON, outbox.py) goes to the outbox in the same step when
        this settle changes the ledger."""
        ...

    async def release(
        self, reservation: Reservation, *, known_only: bool = False, event: str | None = None
    ) -> SettleResult:
        """Free the reservation without charging (the call never produced output). One the store
        does not have frees nothing and leaves a RELEASED tombstone; with `known_only` nothing
        is written and the result says MISSING. `event`, as commit's."""
        ...

    async def balances(self, tenant: str) -> list[BalanceRow]:
        """Every ledger entry of the tenant's own scopes (all levels but its end users', values,
        units and live periods). End users' entries are kept apart (store/redis/layout.py
        `:users`) and never read here, however many there are: `top_spenders` and `lines`
        read them."""
        ...

    async def top_spenders(
        self, tenant: str, level: str, unit: str, period_id: str, limit: int
    ) -> list[BalanceRow]:
        """The `limit` entries of `level` in `unit` and period `period_id` with the most spent,
        most first (spenders.py): a tenant's top end users. Reads only, a batch at a time."""
        ...

    async def lines(
        self, tenant: str, lines: Sequence[BudgetLine], utc_offset_min: int = 0
    ) -> list[LineBalance]:
        """Where each line stands in the period current now in the tenant's calendar (UTC +
        `utc_offset_min`, the tenant's anchor), with the limit a reserve would hold it to.
        Reads only."""
        ...

    async def reservation(self, tenant: str, reservation_id: str) -> ReservationRecord | None:
        """The tenant's record of this reservation; None when the store has none (never
        reserved by this tenant, or settled longer ago than the tombstone lasts)."""
        ...

    async def rollups(self, tenant: str, since: str, until: str | None = None) -> list[DayRollup]:
        """The tenant's rollups for days since..until (inclusive, "YYYY-MM-DD"; until defaults to
        the tenant's today), sorted by (day, level order, value, unit). Days with nothing are
        absent, and so are days that ended longer ago than the history retention (rollups.py).
        Raises ValueError for a day that is not "YYYY-MM-DD" or a range that ends before it
        starts. Reads only."""
        ...

    async def heartbeat(self) -> None:
        """Record that this instance (`owner`) is alive. Independent of sweeping: the app
        writes it from a task of its own."""
        ...

    async def sweep_all(self) -> int:
        """One pass of the sweeper (sweeping.py): the tenants with something due, and the
        open reservations of instances without a recent heartbeat (dead), with bounded work per
        step and a time budget per pass; what is left is resumed by the next pass. A tenant
        whose sweep fails is logged, counted in `sweep_errors` and skipped. Returns how many
        reservations it resolved."""
        ...

    def on_epoch_lost(self, hook: Callable[[str | None, str | None], None]) -> None:
        """Call `hook(expected, found)` once when the store is found flushed or replaced since
        this process started (store/redis/safety.py); the memory store lives and dies with the
        process, so it never calls it."""
        ...

    async def close(self) -> None: ...
