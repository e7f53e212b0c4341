"""Quotas in the memory store, and how a reserve combines them with the budget choice
(`decide`): step for step what lua/quotas.lua and lua/reserve.lua do in Redis.

Fields (in Redis they share the tenant's ledger hash, under `q|`, which no budget level uses):

    q|conc|<level>|<value>   calls in flight on that scope; no expiry, dropped when back at 0
    q|runs|<day id>          runs first seen that (tenant-local) day; kept until day end + grace
    q|run|<run>|day          the day id the run was first seen (a string)
    q|run|<run>|steps        admitted calls of the run
    q|rpm|tat, q|tpm|tat     GCRA theoretical arrival time, integer µs; kept 2 minutes
    q|rpm|<level>|<value>|tat   the same for a level's request rate (each end user's, say)

`q|run|…` fields expire `run_idle_ms` after the run's last admitted call could still be open
(its hold: the reservation cap, or an action's shorter ttl). Checks are read-only;
`count` writes only once the call is admitted, so a denied call counts nothing.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field

from proxy.core.types import ReservationSettings
from proxy.store.ledger.base import ReserveRequest
from proxy.store.ledger.calendar import Calendar
from proxy.store.ledger.choose import Choice
from proxy.store.ledger.common import Outcome

WINDOW_US = 60_000_000
MAX_STEP_MINUTES = 10**7
"""A call costing more than this many minutes of its rate counts as costing this many (only
its retry_after_ms shows it), so arrival times stay far below 2**53 µs."""
RATE_KEEP_MS = 120_000
CONCURRENCY_RETRY_MS = 1000


@dataclass(slots=True)
class Counters:
    """One tenant's quota fields. `expiry` is the tenant's ledger expiry map (shared with the
    budget entries, as Redis shares its `ledger_exp` zset)."""

    expiry: MutableMapping[str, int]
    values: dict[str, int] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)

    def snapshot(self) -> dict[str, int | str]:
        return {**self.values, **self.seen}

    def drop(self, name: str) -> None:
        self.values.pop(name, None)
        self.seen.pop(name, None)


@dataclass(slots=True)
class Gate:
    """What the quotas decided for one call, and what admitting it will count."""

    quota: str | None = None
    retry_after_ms: int = 0
    held: tuple[str, ...] = ()
    new_run: tuple[str, str, int] | None = None
    """(`q|run|<run>|day`, today's id, today's end) when the run has not been seen before."""
    run_fields: tuple[str, ...] = ()
    rates: dict[str, int] = field(default_factory=dict)
    """Rate field -> new arrival time, for each rate that admits the call."""

    def refuse(self, quota: str, retry_after_ms: int) -> None:
        """Remember the first quota that denies (shadow goes on checking the rest)."""
        if self.quota is None:
            self.quota, self.retry_after_ms = quota, retry_after_ms


def gcra(tat: int, now_us: int, limit: int, cost: int) -> tuple[int | None, int]:
    """(new arrival time to store, or None when denied; retry after ms). A call moves the
    arrival time by floor(60e6 * cost / limit) µs, in integers (see Quotas.tokens_per_minute);
    lua/quotas.lua computes the same numbers."""
    minutes, part = divmod(cost, limit)
    step = min(minutes, MAX_STEP_MINUTES) * WINDOW_US + part * WINDOW_US // limit
    new_tat = max(tat, now_us) + step
    over = new_tat - now_us - WINDOW_US
    if over > 0:
        return None, -(-over // 1000)
    return new_tat, 0


def decide(
    c: Counters, request: ReserveRequest, choice: Choice, now_ms: int, cal: Calendar
) -> tuple[Outcome, Gate]:
    """Quotas first, then budgets (`choice`), then the chosen candidate's token rate.
    Enforcement stops at the first that denies; shadow reports it and goes on. `cal` is the
    tenant's calendar (runs_per_day counts its days)."""
    gate, enforce = check(c, request, now_ms, cal), not request.shadow
    if enforce and (gate.quota is not None or choice.index is None):
        return _denied(choice, gate), gate
    tpm = request.quotas.tokens_per_minute
    if tpm is not None:
        cost = (choice.amounts or request.candidates[0].amounts)["TOKENS"]
        rate(c, gate, "tokens_per_minute", "q|tpm|tat", tpm, cost, now_ms)
        if enforce and gate.quota is not None:
            return _denied(choice, gate), gate
    index = 0 if choice.index is None else choice.index
    would_allow = choice.index is not None and gate.quota is None
    fitted, retry = choice.fitted, gate.retry_after_ms
    return Outcome(index, would_allow, choice.denied_by, fitted, retry, gate.quota), gate


def _denied(choice: Choice, gate: Gate) -> Outcome:
    return Outcome(-1, False, choice.denied_by, None, gate.retry_after_ms, gate.quota)


def check(c: Counters, request: ReserveRequest, now_ms: int, cal: Calendar) -> Gate:
    """Every quota but tokens_per_minute, in order: concurrency, runs per day, steps per run,
    requests per minute (the tenant's, then each level's)."""
    gate, q, run = Gate(), request.quotas, request.run
    held = []
    for level, value, limit in q.concurrent:
        name = f"q|conc|{level}|{value}"
        held.append(name)
        if c.values.get(name, 0) >= limit:
            gate.refuse(f"concurrent_requests {level}", CONCURRENCY_RETRY_MS)
    gate.held = tuple(held)
    if run is not None and q.runs_per_day is not None:
        _check_run(c, gate, run, q.runs_per_day, now_ms, cal)
    if run is not None and q.steps_per_run is not None:
        steps = f"q|run|{run}|steps"
        gate.run_fields += (steps,)
        if c.values.get(steps, 0) >= q.steps_per_run:
            gate.refuse("steps_per_run", 0)
    if q.requests_per_minute is not None:
        rate(c, gate, "requests_per_minute", "q|rpm|tat", q.requests_per_minute, 1, now_ms)
    for level, value, limit in q.rates:
        name = f"q|rpm|{level}|{value}|tat"
        rate(c, gate, f"requests_per_minute {level}", name, limit, 1, now_ms)
    return gate


def _check_run(c: Counters, gate: Gate, run: str, limit: int, now_ms: int, cal: Calendar) -> None:
    marker = f"q|run|{run}|day"
    gate.run_fields += (marker,)
    if marker in c.seen:
        return
    today = cal.period_id("day", now_ms)
    end = cal.period_end(today)
    gate.new_run = (marker, today, end)
    if c.values.get(f"q|runs|{today}", 0) >= limit:
        gate.refuse("runs_per_day", end - now_ms)


def rate(
    c: Counters, gate: Gate, quota: str, name: str, limit: int, cost: int, now_ms: int
) -> None:
    """GCRA on the arrival time in field `name`; a rate that denies is not advanced."""
    new_tat, retry = gcra(c.values.get(name, 0), now_ms * 1000, limit, cost)
    if new_tat is None:
        gate.refuse(quota, retry)
    else:
        gate.rates[name] = new_tat


def count(
    c: Counters, gate: Gate, now_ms: int, settings: ReservationSettings, hold_ms: int
) -> None:
    """Count an admitted call against every quota it was checked against. The run's fields
    outlive the call (open for up to `hold_ms`) by the idle TTL."""
    for name in gate.held:
        c.values[name] = c.values.get(name, 0) + 1
    if gate.new_run is not None:
        marker, today, end = gate.new_run
        runs = f"q|runs|{today}"
        c.seen[marker] = today
        c.values[runs] = c.values.get(runs, 0) + 1
        _keep(c, runs, end + settings.period_grace_ms)
    for name in gate.run_fields:
        if name.endswith("|steps"):
            c.values[name] = c.values.get(name, 0) + 1
        _keep(c, name, now_ms + hold_ms + settings.run_idle_ms)
    for name, tat in gate.rates.items():
        c.values[name] = tat
        _keep(c, name, now_ms + RATE_KEEP_MS)


def free(c: Counters, held: tuple[str, ...]) -> None:
    """A held call ended: one less in flight on each scope, never below 0."""
    for name in held:
        left = c.values.get(name, 0) - 1
        if left > 0:
            c.values[name] = left
        else:
            c.values.pop(name, None)


def _keep(c: Counters, name: str, at: int) -> None:
    c.expiry[name] = max(at, c.expiry.get(name, at))
