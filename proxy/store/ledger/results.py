"""What the ledger answers and keeps: a reserve's and a settle's results, the reservation a
caller holds and the record the store keeps of it, balances, and alert crossings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from proxy.core.types import END_USER, Unit
from proxy.store.ledger.request import Amounts, BudgetLine

State = Literal["OPEN", "COMMITTED", "RELEASED", "EXPIRED_CHARGED", "EXPIRED_RELEASED", "MISSING"]
TenantStatus = Literal["active", "suspended", "closed"]


@dataclass(frozen=True, slots=True)
class LineState:
    line: BudgetLine
    period_id: str
    """The period's start in the tenant's calendar: "m20261101" (a month period, anchor 1;
    "m20261115" for anchor 15), "d20261123", or "-" for a line without a period (runs)."""
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
    held: tuple[str, ...] = ()
    """Concurrency counters this call holds (freed at settle, clamped at 0)."""
    limits: tuple[int, ...] = ()
    """Each field's limit (its line's, overrides applied), for alerts; empty without alerts."""
    alerts: tuple[int, ...] = ()
    """Alert thresholds in basis points of each field's limit (8000: 80 %)."""


@dataclass(frozen=True, slots=True)
class ReservationRecord:
    """What the store keeps of a reservation, open or settled (until its tombstone expires):
    enough to settle it from any instance (Ledger.reservation)."""

    id: str
    state: State
    deadline_ms: int
    """When it expires if still OPEN then (the store's clock); kept after it is settled."""
    amounts: Amounts
    """The reserved amount per unit."""
    fields: tuple[str, ...]
    """The field prefixes it was reserved on (`<level>|<value>|<unit>|<period id>`)."""
    held: tuple[str, ...] = ()
    actual: Amounts | None = None
    """What its commit charged; None until committed."""
    scope: str | None = None
    """The scope path it was reserved with, when the reserve asked to keep it
    (ReserveRequest.keep_scope); None otherwise, and for a record an earlier release wrote."""


@dataclass(frozen=True, slots=True)
class LineBalance:
    """Where a budget line stands in its current period (Ledger.lines)."""

    line: BudgetLine
    """With the limit in force: a tenant's override applied as the reserve script applies it."""
    period_id: str
    spent: int
    reserved: int
    credit: int

    @property
    def remaining(self) -> int:
        return self.line.limit + self.credit - self.spent - self.reserved


@dataclass(frozen=True, slots=True)
class ReserveResult:
    allowed: bool
    """Whether the call may proceed: a reservation is held for it now. In shadow mode True,
    except for a repeat that found the reservation settled (`settled`)."""
    would_allow: bool
    """What enforcement would have decided (equals `allowed` when not in shadow mode)."""
    candidate: int
    """Index of the reserved candidate, or -1 when nothing was reserved (in shadow: the index
    enforcement would have chosen, 0 when it would have denied)."""
    denied_by: int | None
    """Index into `lines` of the first line the call as asked (candidate 0) does not fit; when
    it fits (or its condition is `never`), of the first line the first applicable degrade rule
    does not fit; None when neither misses a line."""
    lines: tuple[LineState, ...]
    status: TenantStatus
    reservation: Reservation | None
    """None when nothing was reserved (denied, or the tenant is not active). For a repeat that
    found the reservation settled, what it reserved then: a settle of that id (a spilled
    call's commit, gateway/spill.py) goes by it."""
    fitted: int | None = None
    """Completion tokens per choice when the chosen candidate is a `fit` (the caller caps the
    request's completion limit at this)."""
    quota: str | None = None
    """The quota that denies (or would deny, in shadow): `concurrent_requests <level>`,
    `runs_per_day`, `steps_per_run`, `requests_per_minute`, `tokens_per_minute`."""
    stale: bool = False
    """The request's `version` is not the store's: nothing happened; reload and retry."""
    retry_after_ms: int = 0
    """With `quota`: the best estimate of when it frees (0 for steps_per_run: it never does;
    1000 for concurrency; the tenant's next local midnight for runs_per_day)."""
    first_deny: str | None = None
    """A denial by a budget line (enforcement, not shadow) that is the first on that line in
    its period: the line's field prefix `<level>|<value>|<unit>|<period id>`. The store keeps
    `q|alert|<prefix>|deny` (HSETNX, expiring with the period), so it is reported once per
    period and scope however many instances deny (alerts: budget.first_deny)."""
    settled: State | None = None
    """A repeat of a reservation id whose record is no longer OPEN (committed, released or
    expired: a tombstone): its state. Nothing was reserved now and nothing is held, so the
    repeat is not `allowed`, whatever the record's first answer was."""


@dataclass(frozen=True, slots=True)
class SettleResult:
    state: State
    """The reservation's state after this call."""
    first: bool
    """False when the reservation was already settled and this call changed nothing."""
    charged: Amounts
    """What this call added to `spent` per unit (may be negative after EXPIRED_CHARGED)."""
    crossed: tuple[Crossing, ...] = ()
    """Alert thresholds this commit crossed for the first time in their period (commit only)."""


@dataclass(frozen=True, slots=True)
class Crossing:
    """A commit took `spent` on `field` from below `ceil(limit * basis_points / 10**4)` to at
    least that, and no earlier commit had (the store keeps `q|alert|<field>|<basis points>`
    until the period's entries expire, so each threshold fires once per period and scope)."""

    field: str
    basis_points: int
    limit: int
    spent: int
    """`spent` on the field right after the commit."""


@dataclass(frozen=True, slots=True)
class AlertLimits:
    """What a sweep needs to tell whether charging an expired reservation crossed an alert
    threshold, as a commit would: the tenant's thresholds and each budget's limit by (level,
    unit), overrides applied."""

    thresholds: tuple[int, ...]
    limits: Mapping[tuple[str, str], int]

    def marks(self) -> list[tuple[str, str, int, int]]:
        """(level, unit, basis points, the `spent` that reaches it); none for a zero limit, nor
        for an end user's lines (common.alerted)."""
        return [
            (level, unit, bp, -(-limit * bp // 10_000))
            for (level, unit), limit in sorted(self.limits.items())
            if limit > 0 and level != END_USER
            for bp in self.thresholds
        ]

    def crossing(self, field: str, bp: int, spent: int) -> Crossing:
        level, _value, unit, _period = field.split("|")
        return Crossing(field, bp, self.limits.get((level, unit), 0), spent)


class ExpiryAlerts(Protocol):
    """How a store's sweep reports the alert thresholds its expiry charges crossed."""

    async def limits(self, tenant: str) -> AlertLimits | None:
        """The tenant's thresholds and limits; None: it has no alerts."""
        ...

    def crossed(self, tenant: str, crossings: Sequence[Crossing]) -> None:
        """Announce them (called after the sweep's atomic step recorded them)."""
        ...


@dataclass(frozen=True, slots=True)
class BalanceRow:
    level: str
    value: str
    unit: Unit
    period_id: str
    spent: int
    reserved: int
    credit: int


@dataclass(frozen=True, slots=True)
class DayRollup:
    """One budget line of one tenant on one day (the tenant's local day, as its periods)."""

    day: str
    """"2026-12-05"."""
    level: str
    """tenant | workspace | app | workflow | agent | toolset | run | user, or "-" for the
    tenant-wide row (every call the tenant reserved, and the denials no line made)."""
    value: str
    """The scope value; "*" for run and user (every value summed: runs and end users are
    unbounded); "-" on the tenant-wide row."""
    unit: str
    """"USD" | "TOKENS" | an action unit ("RISK_POINTS", "EMAILS"); "-" on the tenant-wide row."""
    period: str
    """The line's period ("day", "month", "none"; "-" on the tenant-wide row). Rows are kept
    per period: a scope with a daily and a monthly budget in one unit has a row for each."""
    limit: int
    """The line's limit at the day's last reserve on it (units, the tenant's override
    applied); a day without one takes the day before's (0 when it has none either)."""
    spent: int
    """Charged that day on the line: commits' actuals, expiry charges, late differences (may be
    0, or negative when a late commit charged less than the expiry); Σ over values for "*"."""
    reserved_peak: int
    """The most the line held reserved at once that day (max over values for "*")."""
    calls: int
    """Reservations that took the line that day (shadow calls that went ahead too)."""
    reserved_sum: int
    """Σ estimates reserved on the line that day."""
    committed_sum: int
    """Σ actuals committed that day for reservations on the line."""
    denials: Mapping[str, int]
    """Reason -> enforced denials BY this line ("budget"); on the tenant-wide row
    "quota:<name>" and "tenant_<status>"."""
    degradations: Mapping[str, int]
    """Degrade rule (as the audit trail names it) -> calls on this line it degraded
    (enforced: a shadow call is never rewritten)."""
    shadow_denials: int
    """Shadow calls this line (or, on the tenant-wide row, a quota) would have denied."""
    value_peak: int
    """"*" rows: the largest single run's / user's spend in its period as of that day; other
    rows: the line's spent in its period at the day's last write."""
