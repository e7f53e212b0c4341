"""The Redis scripts' replies in Python form, and a candidate in ARGV form (the layouts are in
each script's header, lua/*.lua)."""

from __future__ import annotations

from dataclasses import astuple
from typing import cast

from proxy.core.errors import LedgerError
from proxy.store.ledger.base import (
    Candidate,
    Crossing,
    Reservation,
    SettleResult,
    State,
    TenantStatus,
)
from proxy.store.ledger.common import decode_amounts, encode_amounts


def status_of(text: str) -> TenantStatus:
    if text not in ("active", "suspended", "closed"):
        raise LedgerError(f"tenant status {text!r} in the store is not active/suspended/closed")
    return cast(TenantStatus, text)


def candidate_args(candidate: Candidate) -> list[str]:
    """amounts, condition, fit, name: the four ARGVs of a candidate (see lua/candidates.lua); a
    fit is its fields in declaration order."""
    c, fit = candidate.condition, candidate.fit
    when = f"{c.kind}:{c.line:d}:{c.amount:d}" if c.kind == "remaining_below" else c.kind
    shape = "-" if fit is None else ",".join(f"{x:d}" for x in astuple(fit))
    return [encode_amounts(candidate.amounts), when, shape, candidate.name]


def held_of(text: str) -> tuple[str, ...]:
    return () if text == "-" else tuple(text.split(","))


def settle_flags(final_release: bool, known_only: bool) -> str:
    """commit.lua's and release.lua's flags (common.lua has_flag)."""
    return ("f" if final_release else "") + ("k" if known_only else "") or "-"


def settled(reply: list[str], crossed: tuple[Crossing, ...] = ()) -> SettleResult:
    return SettleResult(
        state=cast(State, reply[0]),
        first=reply[1] == "1",
        charged=decode_amounts(reply[2]),
        crossed=crossed,
    )


def crossings(reservation: Reservation, fired: list[str]) -> tuple[Crossing, ...]:
    """commit.lua's (prefix, basis points, spent) triples, with each field's limit."""
    limits = dict(zip(reservation.fields, reservation.limits, strict=False))
    return tuple(
        Crossing(fired[i], int(fired[i + 1]), limits.get(fired[i], 0), int(fired[i + 2]))
        for i in range(0, len(fired) - 2, 3)
    )
