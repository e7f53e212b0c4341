"""What both stores share: the wire form of amounts and outcomes, results (period arithmetic
is in calendar.py).

Everything here is pure (no I/O). `memory.py` uses the period functions directly; `redis.py`
leaves periods to the scripts (lua/common.lua), which compute exactly the same ids and ends.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from proxy.core.types import CALL_UNITS, END_USER, ReservationSettings
from proxy.store.ledger.base import (
    AlertLimits,
    Amounts,
    BalanceRow,
    BudgetLine,
    ExpiryAlerts,
    LineState,
    Reservation,
    ReserveRequest,
    ReserveResult,
    State,
    TenantStatus,
)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def instance_id() -> str:
    """A fresh id for this process: `<hostname>-<pid>-<random hex>`."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


def encode_amounts(amounts: Amounts) -> str:
    """`USD=123,TOKENS=45`, or `-` when empty (the form stored in reservation records)."""
    return ",".join(f"{unit}={amount:d}" for unit, amount in amounts.items()) or "-"


def decode_amounts(text: str) -> dict[str, int]:
    if text == "-":
        return {}
    return {unit: int(amount) for unit, amount in (p.split("=") for p in text.split(","))}


def limit_in_force(line: BudgetLine, overrides: Mapping[str, int]) -> int:
    """The limit a reserve holds `line` to: the tenant's override for its level (the store's
    :meta, authoritative) replaces a call budget's limit; an action budget's is the plan's
    (lua/common.lua line_limit; runtime.Budget.limit_with)."""
    if line.unit in CALL_UNITS:
        return overrides.get(line.level, line.limit)
    return line.limit


def field_expiry(prefix: str, now_ms: int, run_idle_ms: int) -> int | None:
    """When an entry without a period may be dropped: a run's after an idle TTL, one of
    another level (a lifetime budget) never. Period entries: see calendar.py; an end user's:
    `user_expiry`."""
    return now_ms + run_idle_ms if prefix.split("|")[0] == "run" else None


def user_expiry(idle_from_ms: int, settings: ReservationSettings, period_end: int | None) -> int:
    """When an end user's entry may be dropped (lua/common.lua user_expiry): `user_idle_ms`
    after the call that touched it can no longer be open (`idle_from_ms`), but never before its
    period ends (`period_end`; None: the line has no period), or the user would be handed the
    period's budget again; and never later than any period entry, its end + grace."""
    idle = idle_from_ms + settings.user_idle_ms
    if period_end is None:
        return idle
    return min(period_end + settings.period_grace_ms, max(period_end, idle))


def end_users(field: str) -> bool:
    """Whether a field (`<level>|…`) is an end user's."""
    return field.split("|", 1)[0] == END_USER


def alerted(field: str) -> bool:
    """Whether a line's thresholds and first denial alert: not an end user's (there may be
    millions of them; their denials are in the audit trail and the metrics)."""
    return not end_users(field)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a reserve decided, as both stores record it (for an idempotent repeat)."""

    candidate: int
    would_allow: bool
    denied_by: int | None = None
    fitted: int | None = None
    retry_after_ms: int = 0
    quota: str | None = None

    @classmethod
    def decode(cls, text: str) -> Outcome:
        """From the form reserve.lua records and returns:
        `<candidate>:<would_allow 1|0>:<denied_by>:<fitted>:<retry_after_ms>:<quota>`, with `-`
        for None and `/` for the space in `concurrent_requests <level>`."""
        candidate, would_allow, denied, fitted, retry, quota = text.split(":", 5)
        return cls(
            int(candidate),
            would_allow == "1",
            None if denied == "-" else int(denied),
            None if fitted == "-" else int(fitted),
            int(retry),
            None if quota == "-" else quota.replace("/", " "),
        )


DENIED = Outcome(-1, False)


def reserve_result(
    request: ReserveRequest,
    status: TenantStatus,
    outcome: Outcome,
    amounts: Amounts,
    lines: Sequence[tuple[str, int]],
    fields: Sequence[str],
    held: Sequence[str] = (),
    *,
    stale: bool = False,
    first_deny: str | None = None,
    settled: State | None = None,
) -> ReserveResult:
    """Assemble a result from what a store decided: the outcome, the reserved amounts,
    (period id, remaining) per request line, the reserved field prefixes and held counters;
    `settled`: the state of the settled record a repeat of the reservation found."""
    reservation = None
    if outcome.candidate >= 0:
        alerting = bool(request.alerts) and len(fields) == len(request.lines)
        reservation = Reservation(
            request.tenant,
            request.reservation_id,
            tuple(fields),
            amounts,
            tuple(held),
            tuple(line.limit for line in request.lines) if alerting else (),
            tuple(request.alerts) if alerting else (),
        )
    return ReserveResult(
        allowed=reservation is not None and settled is None,
        would_allow=outcome.would_allow,
        candidate=outcome.candidate,
        denied_by=outcome.denied_by,
        lines=tuple(
            [
                LineState(line, pid, remaining)
                for line, (pid, remaining) in zip(request.lines, lines, strict=True)
            ]
        ),
        status=status,
        reservation=reservation,
        fitted=outcome.fitted,
        quota=outcome.quota,
        stale=stale,
        retry_after_ms=outcome.retry_after_ms,
        first_deny=first_deny,
        settled=settled,
    )


NO_ALERTS = AlertLimits((), {})


async def expiry_limits(
    hook: ExpiryAlerts | None, settings: ReservationSettings, tenant: str
) -> AlertLimits:
    """The alert limits a sweep of `tenant` checks its expiry charges against (none when
    expiries release, or no one listens)."""
    if hook is None or settings.on_expiry != "charge":
        return NO_ALERTS
    return await hook.limits(tenant) or NO_ALERTS


def alert_marks(reservation: Reservation) -> list[tuple[str, int, int]]:
    """(field, basis points, the `spent` that reaches it) for every alert threshold of every
    alerted field of the reservation; a zero limit has no thresholds (there is nothing to be a
    share of)."""
    return [
        (field, bp, -(-limit * bp // 10_000))
        for field, limit in zip(reservation.fields, reservation.limits, strict=False)
        if limit > 0 and alerted(field)
        for bp in reservation.alerts
    ]


def balance_rows(entries: Mapping[str, int | str]) -> list[BalanceRow]:
    """Ledger hash fields (`<prefix>|spent` …) grouped into one row per entry, by prefix; quota
    counters (`q|…`) are not budget entries and are left out."""
    rows: dict[str, dict[str, int]] = {}
    for name, value in entries.items():
        if name.startswith("q|"):
            continue
        prefix, kind = name.rsplit("|", 1)
        rows.setdefault(prefix, {})[kind] = int(value)
    return [
        balance_row(prefix, *(sums.get(kind, 0) for kind in ("spent", "reserved", "credit")))
        for prefix, sums in sorted(rows.items())
    ]


def balance_row(prefix: str, spent: int, reserved: int, credit: int) -> BalanceRow:
    """The row of the entry `<level>|<value>|<unit>|<period id>`."""
    level, value, unit, pid = prefix.split("|")
    return BalanceRow(level, value, unit, pid, spent, reserved, credit)
