"""The ledger interface: reserve on every budgeted scope or none, then commit or release.

Both stores (`memory.py`, `redis.py`) implement `Ledger` with identical semantics; one contract
suite (tests/test_ledger_contract.py) runs against each. Amounts are integers in the unit of the
budget line they apply to (USD in 10**-8 dollars, TOKENS as counts).

Per scope line and period the store keeps `spent`, `reserved` and `credit`;
`remaining = limit + credit - spent - reserved` and debt `max(0, -remaining)` are derived.

A reservation is OPEN until it becomes COMMITTED, RELEASED, EXPIRED_CHARGED or
EXPIRED_RELEASED. Its record holds the resolved lines with their period ids, so a call reserved
on 30 November commits to November. Settling twice is idempotent (the second call returns the
first outcome); a commit after EXPIRED_CHARGED applies only `actual - estimate`; a commit for a
reservation the store no longer has still charges `spent`, clamping `reserved` at 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from proxy.policy.runtime import Period, Unit

Amounts = Mapping[str, int]
"""Amount per unit, e.g. {"USD": 1_250_000, "TOKENS": 812}."""

State = Literal["OPEN", "COMMITTED", "RELEASED", "EXPIRED_CHARGED", "EXPIRED_RELEASED", "MISSING"]
TenantStatus = Literal["active", "suspended", "closed"]


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One budget this call is checked against: the (tenant, level, value) scope, its limit."""

    level: str
    value: str
    unit: Unit
    period: Period
    limit: int


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    tenant: str
    reservation_id: str
    lines: Sequence[BudgetLine]
    candidates: Sequence[Amounts]
    """Amounts per unit for each form of the call, as asked first; the first that fits every
    line is reserved. Each must name every unit that appears in `lines`."""
    shadow: bool = False
    """Reserve the first candidate whatever the outcome, and report what would have happened."""


@dataclass(frozen=True, slots=True)
class LineState:
    line: BudgetLine
    period_id: str
    """e.g. "m202611", "d20261123", or "-" for a line without a period (runs)."""
    remaining: int
    """After this reservation when one was made, else before it."""

    @property
    def field(self) -> str:
        """The ledger field prefix: `<level>|<value>|<unit>|<period id>`."""
        return f"{self.line.level}|{self.line.value}|{self.line.unit}|{self.period_id}"


@dataclass(frozen=True, slots=True)
class Reservation:
    """What settling needs: enough to charge correctly even if the store lost the record."""

    tenant: str
    id: str
    fields: tuple[str, ...]
    """Resolved field prefixes (with period ids) of every line reserved on."""
    amounts: Amounts
    """The reserved estimate per unit."""


@dataclass(frozen=True, slots=True)
class ReserveResult:
    allowed: bool
    """Whether the call may proceed. In shadow mode always True."""
    would_allow: bool
    """What enforcement would have decided (equals `allowed` when not in shadow mode)."""
    candidate: int
    """Index of the reserved candidate, or -1 when nothing was reserved."""
    denied_by: int | None
    """Index into `lines` of the first line the call as asked (candidate 0) does not fit."""
    lines: tuple[LineState, ...]
    status: TenantStatus
    reservation: Reservation | None
    """None when nothing was reserved (denied, or the tenant is not active)."""


@dataclass(frozen=True, slots=True)
class SettleResult:
    state: State
    """The reservation's state after this call."""
    first: bool
    """False when the reservation was already settled and this call changed nothing."""
    charged: Amounts
    """What this call added to `spent` per unit (may be negative after EXPIRED_CHARGED)."""


@dataclass(frozen=True, slots=True)
class BalanceRow:
    level: str
    value: str
    unit: Unit
    period_id: str
    spent: int
    reserved: int
    credit: int


class Ledger(Protocol):
    async def reserve(self, request: ReserveRequest) -> ReserveResult:
        """Check tenant status and every line; reserve the first candidate that fits all lines,
        on all of them, atomically, or nothing."""
        ...

    async def commit(self, reservation: Reservation, actual: Amounts) -> SettleResult:
        """Charge what the provider reported (even above the estimate) and free the reservation."""
        ...

    async def release(self, reservation: Reservation) -> SettleResult:
        """Free the reservation without charging (the call never produced output)."""
        ...

    async def balances(self, tenant: str) -> list[BalanceRow]:
        """Every ledger entry the tenant has (all levels, values, units and live periods)."""
        ...

    async def set_status(self, tenant: str, status: TenantStatus) -> None:
        """Set the tenant's lifecycle status in `:meta`; reserve checks it atomically."""
        ...

    async def sweep(self, tenant: str, dead_owners: Sequence[str] = ()) -> int:
        """Resolve the tenant's overdue reservations (past the absolute cap, or owned by a dead
        instance) per policy, drop expired tombstones and entries. Returns how many it resolved."""
        ...

    async def heartbeat(self) -> None:
        """Record that this instance (`owner`) is alive."""
        ...

    async def sweep_all(self) -> int:
        """Sweep every tenant the store knows, treating instances without a recent heartbeat as
        dead. Returns how many reservations it resolved."""
        ...

    async def close(self) -> None: ...
