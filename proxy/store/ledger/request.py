"""What a reserve asks of the ledger: the budget lines it is checked against, the forms of the
call (candidates, with their conditions and fits) and the quotas counted with it (base.py says
what the ledger does with them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from proxy.core.types import Period, Unit

Amounts = Mapping[str, int]
"""Amount per unit, e.g. {"USD": 1_250_000, "TOKENS": 812}."""


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
    rates: Sequence[tuple[str, str, int]] = ()
    """(level, value, limit): requests per minute on that scope (each end user its own), GCRA
    as the tenant's; checked after it, and denied as `requests_per_minute <level>`."""
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
    replay: bool = False
    """With `shadow`: the call was served while the store was away and is written now
    (gateway/spill.py). It is reserved and counted as a call, but what enforcement would have
    denied is neither a shadow denial in the day's rollups nor a would-be denial (`would`) in
    the audit: nothing could have denied it."""
    action: str | None = None
    """What is reserved for, when not an LLM call: an action's name (the reservation API) or
    `mcp:<server>/<tool>`; recorded as `action` in the reserve's audit entry."""
    group: str | None = None
    """What the audit groups this call's denials by when not `action` (a tool call: its price
    key, `mcp:crm/delete_*`, or `mcp:<server>/?` unpriced), so that names a client makes up
    fold into one entry a minute; the entry's `action` is the first one denied."""
