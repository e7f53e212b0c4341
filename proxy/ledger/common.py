"""What both stores share: amount checks, period arithmetic, the wire form of amounts, results.

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
from datetime import date, timedelta
from typing import cast

from proxy.errors import AmountOutOfRange
from proxy.ledger.base import (
    Amounts,
    BalanceRow,
    LineState,
    Reservation,
    ReserveRequest,
    ReserveResult,
    TenantStatus,
)
from proxy.policy.runtime import MAX_AMOUNT, Unit

DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1)
_TOKEN = re.compile(r"^[^|\s]+$")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def instance_id() -> str:
    """A fresh id for this process: `<hostname>-<pid>-<random hex>`."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


def check_owner(owner: str) -> str:
    if not _TOKEN.match(owner):
        raise ValueError(f"ledger owner {owner!r} must be non-empty, without spaces or '|'")
    return owner


def check_amount(what: str, amount: object) -> None:
    """Refuse anything Lua's doubles could not hold exactly, before it reaches a store."""
    if type(amount) is not int or not 0 <= amount < MAX_AMOUNT:
        raise AmountOutOfRange(f"{what} must be an integer in [0, 2**52), got {amount!r}")


def check_amounts(what: str, amounts: Amounts) -> None:
    for unit, amount in amounts.items():
        check_amount(f"{what} {unit}", amount)


def check_request(request: ReserveRequest) -> None:
    """Validate a reservation request completely; a store may then trust every value in it."""
    if not request.candidates:
        raise ValueError("a reserve request needs at least one candidate")
    for line in request.lines:
        if not (_TOKEN.match(line.level) and _TOKEN.match(line.value)):
            raise ValueError(f"scope {line.level}={line.value!r} contains '|' or whitespace")
        if line.period not in ("day", "month", "none"):
            raise ValueError(f"unknown budget period {line.period!r}: use day, month or none")
        check_amount(f"limit of {line.level} {line.value}", line.limit)
    for index, candidate in enumerate(request.candidates):
        check_amounts(f"candidate {index}", candidate)
        missing = {line.unit for line in request.lines} - set(candidate)
        if missing:
            raise ValueError(f"candidate {index} names no amount for {sorted(missing)}")


def check_reservation(reservation: Reservation) -> None:
    check_amounts(f"estimate of {reservation.id}", reservation.amounts)


def encode_amounts(amounts: Amounts) -> str:
    """`USD=123,TOKENS=45`, or `-` when empty (the form stored in reservation records)."""
    return ",".join(f"{unit}={amount:d}" for unit, amount in amounts.items()) or "-"


def decode_amounts(text: str) -> dict[str, int]:
    if text == "-":
        return {}
    return {unit: int(amount) for unit, amount in (p.split("=") for p in text.split(","))}


def period_id(period: str, now_ms: int) -> str:
    """`m202611`, `d20261123` (UTC) or `-`; the same ids lua/common.lua computes from TIME."""
    if period == "none":
        return "-"
    day = _EPOCH + timedelta(days=now_ms // DAY_MS)
    if period == "month":
        return f"m{day.year:04d}{day.month:02d}"
    if period == "day":
        return f"d{day.year:04d}{day.month:02d}{day.day:02d}"
    raise ValueError(f"unknown budget period {period!r}")


def period_end_ms(pid: str) -> int:
    """First millisecond after the period `pid` (`m…` or `d…`)."""
    year, month = int(pid[1:5]), int(pid[5:7])
    if pid[0] == "m":
        first = date(year + month // 12, month % 12 + 1, 1)
        return (first - _EPOCH).days * DAY_MS
    return ((date(year, month, int(pid[7:9])) - _EPOCH).days + 1) * DAY_MS


def field_expiry(prefix: str, now_ms: int, run_idle_ms: int, grace_ms: int) -> int | None:
    """When a ledger entry may be dropped: period end + grace; a run's entry after an idle TTL;
    an entry of another level without a period (a lifetime budget) never."""
    level, pid = prefix.split("|")[0], prefix.split("|")[-1]
    if pid != "-":
        return period_end_ms(pid) + grace_ms
    return now_ms + run_idle_ms if level == "run" else None


def reserve_result(
    request: ReserveRequest,
    status: TenantStatus,
    outcome: tuple[int, bool, int | None],
    amounts: Amounts,
    lines: Sequence[tuple[str, int]],
    fields: Sequence[str],
) -> ReserveResult:
    """Assemble a result from what a store decided: (candidate, would_allow, denied_by), the
    reserved amounts, (period id, remaining) per request line and the reserved field prefixes."""
    candidate, would_allow, denied_by = outcome
    reservation = None
    if candidate >= 0:
        reservation = Reservation(request.tenant, request.reservation_id, tuple(fields), amounts)
    return ReserveResult(
        allowed=candidate >= 0,
        would_allow=would_allow,
        candidate=candidate,
        denied_by=denied_by,
        lines=tuple(
            LineState(line, pid, remaining)
            for line, (pid, remaining) in zip(request.lines, lines, strict=True)
        ),
        status=status,
        reservation=reservation,
    )


def balance_rows(entries: Mapping[str, int | str]) -> list[BalanceRow]:
    """Ledger hash fields (`<prefix>|spent` …) grouped into one row per entry, by prefix."""
    rows: dict[str, dict[str, int]] = {}
    for name, value in entries.items():
        prefix, kind = name.rsplit("|", 1)
        rows.setdefault(prefix, {})[kind] = int(value)
    return [_row(prefix, sums) for prefix, sums in sorted(rows.items())]


def _row(prefix: str, sums: dict[str, int]) -> BalanceRow:
    level, value, unit, pid = prefix.split("|")
    return BalanceRow(
        level,
        value,
        cast(Unit, unit),
        pid,
        sums.get("spent", 0),
        sums.get("reserved", 0),
        sums.get("credit", 0),
    )
