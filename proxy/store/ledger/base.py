"""The ledger interface: reserve on every budgeted scope or none, then commit or release.

Both stores (`memory.py`, `redis.py`) implement `Ledger` with identical semantics; one contract
suite (tests/store/test_ledger_contract.py) runs against each. Amounts are integers in the unit of
the budget line they apply to (USD in 10**-8 dollars, TOKENS and RISK_POINTS as counts).

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
the budget entries under `q|…` fields; `counters()` shows them, `balances()` does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from proxy.core.types import Period, Unit

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
class Condition:
    """When a degraded candidate applies, measured before this reservation.

    always          statically known to apply (e.g. the asked model is not on the plan)
    never           statically known not to apply (candidate 0 when its model is not allowed)
    remaining_below lines[line] has remaining < amount (in that line's unit; a percentage of
                    the limit is turned into an amount by the caller)
    not_fit         the call as asked (candidate 0) does not fit every line
    """

    kind: Literal["always", "never", "remaining_below", "not_fit"] = "always"
    line: int = -1
    amount: int = 0


ALWAYS = Condition()


@dataclass(frozen=True, slots=True)
class Fit:
    """Cap the completion to what still fits, computed inside the script from the remaining
    amount: per USD line, `floor((remaining - prompt_units) * 10**6 / (output_per_million *
    choices))` (no limit when the output price is 0); per TOKENS line,
    `floor((remaining - prompt_tokens) / choices)`; the minimum over lines, at most `ceiling`.
    Lines of other units take the candidate's `amounts` as they are. Below `floor`, or when a
    line's remaining does not even cover the prompt, the candidate does not fit.

    The reserved amounts are recomputed from the fitted tokens `t`: TOKENS
    `prompt_tokens + t * choices`, USD `prompt_units + ceil(t * choices * output_per_million /
    10**6)`. That never exceeds the line's remaining (the call cannot overspend) and is at most
    one unit above the single-rounding cost formula, because `prompt_units` is rounded on its
    own. The script does this in exact integer steps: `output_per_million * choices` must stay
    below 2**43, and the amounts at `ceiling` below 2**52 (checked before the store).
    A remaining above 2**52 - 1 (only reachable with enormous credit) counts as 2**52 - 1."""

    prompt_units: int
    """The prompt's USD cost, ceil(prompt tokens x input price / 10**6)."""
    prompt_tokens: int
    output_per_million: int
    """Output price in units per 1M tokens (one choice)."""
    choices: int
    floor: int
    ceiling: int


@dataclass(frozen=True, slots=True)
class Candidate:
    """One form of the call. Candidate 0 is the call as asked; the others are degrade rules in
    policy order. The script takes the first rule whose condition holds and that fits; the call
    as asked only when no rule's condition holds and it fits. Candidate 0 has no `fit`, and its
    condition is `always` or `never` (`never`: it may not be reserved as asked at all)."""

    amounts: Amounts
    """Amounts per unit; must name every unit that appears in the request's lines. For a `fit`
    candidate, what it costs at `fit.ceiling` (the script recomputes from the fitted tokens)."""
    condition: Condition = ALWAYS
    fit: Fit | None = None
    name: str = ""
    """The degrade rule (`degrade[1]`), recorded in the audit when this candidate is chosen."""


@dataclass(frozen=True, slots=True)
class Quotas:
    """Counters checked and counted in the same atomic call as the budgets. A call denied by a
    quota reserves and counts nothing; an admitted one has counted against every quota."""

    concurrent: Sequence[tuple[str, str, int]] = ()
    """(level, value, limit): calls in flight on that scope; freed at settle or by the sweeper."""
    runs_per_day: int | None = None
    """New run ids admitted per day of the tenant's calendar (UTC + `utc_offset_min`); a run
    counts once, on the day it is first seen."""
    steps_per_run: int | None = None
    """Admitted calls per run id."""
    requests_per_minute: int | None = None
    """Per tenant, GCRA with a burst of one minute's worth (in [1, 2**43))."""
    tokens_per_minute: int | None = None
    """Per tenant, GCRA on the chosen candidate's TOKENS amount (in [1, 2**43); every candidate
    must name a TOKENS amount). Checked after the candidate is chosen.

    Both rates keep a theoretical arrival time in integer microseconds, and a call moves it by
    floor(60e6 * cost / limit) µs, computed exactly (no floating point). The floor gains a call
    under 1 µs: a burst admits exactly `limit` requests while requests_per_minute is at most
    7745 (a minute's calls gain less than one interval), and above that at most
    limit**2 / 6e7 extra a minute (0.1% at 60000); a token-rate call gains under limit / 6e7
    tokens. The rate never admits fewer than its limit. A single call costing more than
    `limit` can never pass; its retry_after_ms counts at most 10**7 minutes."""


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    tenant: str
    reservation_id: str
    lines: Sequence[BudgetLine]
    candidates: Sequence[Candidate]
    """The call as asked first, then its degraded forms (see Candidate)."""
    shadow: bool = False
    """Nothing is denied and nothing is rewritten: candidate 0 (the unmodified call, which is
    what gets forwarded) is always the one reserved. The result reports what enforcement would
    have done: `candidate` is the index that would have been chosen (0 when none would),
    `would_allow`, `fitted`, `denied_by`, and `quota` / `retry_after_ms` for the first quota
    that would have denied. Concurrency, runs and steps are counted even past their limit (the
    call really is in flight); a request or token rate that would deny is not advanced, so the
    rate state stays what enforcement would have had and a past burst does not keep reporting
    denials. A suspended or closed tenant reserves and counts nothing, even in shadow."""
    run: str | None = None
    """The run id, for runs_per_day and steps_per_run."""
    quotas: Quotas = Quotas()
    version: int | None = None
    """The tenant record version (TenantRecord.version, 0 for a tenant the store does not have)
    this request was built from. If the store's differs, nothing is reserved or counted and the
    result says `stale`: the caller reloads the tenant and retries. None: not checked."""
    utc_offset_min: int = 0
    """The tenant's time zone offset right now; the script's calendar (day and month periods,
    runs_per_day) is UTC + this."""
    alerts: tuple[int, ...] = ()
    """Alert thresholds in basis points of each line's limit, carried to the reservation so
    that its commit reports the thresholds it crosses (see SettleResult.crossed)."""
    scope: str = ""
    """The scope path as named (`tenant=acme/workflow=triage/run=r-7`), for the audit entry."""
    keep_scope: bool = False
    """Keep `scope` with the reservation's record (ReservationRecord.scope), for whoever settles
    it later to be checked against (an action's reservation: actions/reserving.may_settle)."""
    ttl_ms: int | None = None
    """How long the reservation stays OPEN before the sweeper resolves it per `on_expiry`;
    None (and anything longer) is the store's `cap_ms`. Actions choose theirs; calls never do."""


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
        """(level, unit, basis points, the `spent` that reaches it); none for a zero limit."""
        return [
            (level, unit, bp, -(-limit * bp // 10_000))
            for (level, unit), limit in sorted(self.limits.items())
            if limit > 0
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


class Ledger(Protocol):
    expiry_alerts: ExpiryAlerts | None
    """Set by the app: charges the sweep makes for expired reservations alert like commits."""
    sweep_errors: int
    """Tenants a sweep skipped because their sweep failed, since the ledger was opened (each is
    logged; the app exports the count as cycles_sweeper_tenant_errors_total)."""

    async def connect(self, *, require_noeviction: bool = False) -> None:
        """Check, once at start, that the store is safe to keep a ledger in (Redis: its
        eviction policy; its epoch, which `heartbeat` then watches). Raises StoreUnsafe when
        `require_noeviction` and the store may evict keys."""
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
    ) -> SettleResult:
        """Charge what the provider reported (even above the estimate) and free the reservation.
        With `final_release`, a reservation already RELEASED or EXPIRED_RELEASED is not charged:
        nothing changes and the result says so (an action's release, once answered, is final,
        and so is its release at expiry). A reservation the store does not have (MISSING) is
        charged `actual` and nothing else is freed; with `known_only` nothing is written and the
        result says MISSING (the actions API: an id the store does not know is not found)."""
        ...

    async def release(self, reservation: Reservation, *, known_only: bool = False) -> SettleResult:
        """Free the reservation without charging (the call never produced output). One the store
        does not have frees nothing and leaves a RELEASED tombstone; with `known_only` nothing
        is written and the result says MISSING."""
        ...

    async def balances(self, tenant: str) -> list[BalanceRow]:
        """Every ledger entry the tenant has (all levels, values, units and live periods)."""
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

    async def counters(self, tenant: str) -> dict[str, int | str]:
        """The tenant's raw quota fields, by name: `q|conc|<level>|<value>` (calls in flight),
        `q|runs|<day id>` (runs first seen that day), `q|run|<run>|steps`, `q|run|<run>|day`
        (the day id the run was first seen: the one value that is a string), `q|rpm|tat` and
        `q|tpm|tat` (theoretical arrival times, in µs)."""
        ...

    async def set_status(self, tenant: str, status: TenantStatus) -> None:
        """Set the tenant's lifecycle status in `:meta`; reserve checks it atomically."""
        ...

    async def sweep(self, tenant: str, dead_owners: Sequence[str] = ()) -> int:
        """Resolve the tenant's overdue reservations (past the absolute cap, or owned by a dead
        instance) per policy, drop expired tombstones and entries. Returns how many it resolved.
        Raises AmountOutOfRange when charging an expired reservation would take a sum out of
        the safe range, after resolving the others: it stays OPEN, due again a while later
        (sweeping.STUCK_RETRY_MS)."""
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

    async def close(self) -> None: ...
