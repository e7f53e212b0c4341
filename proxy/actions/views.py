"""The reservation API's JSON answers and its one log line per operation. No I/O."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson

from proxy.actions.asks import Ask
from proxy.actions.reserving import remaining_text, unit_of
from proxy.budget.decision import DECISION, REMAINING, SHADOW, tightest
from proxy.budget.scopes import Scope
from proxy.metering.pricing import format_amount
from proxy.store.ledger.base import LineBalance, ReservationRecord, ReserveResult

log = logging.getLogger("cycles.actions")


def reserved(
    result: ReserveResult, ask: Ask, expires_at_ms: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """The 201 body and headers of a reservation made (in shadow mode, also one that
    enforcement would have refused)."""
    assert result.reservation is not None
    body: dict[str, Any] = {
        "id": result.reservation.id,
        "status": "ALLOW",
        "action": ask.action,
        "amount": ask.amount,
        "unit": ask.unit,
        "expires_at_ms": expires_at_ms,
    }
    headers = {DECISION: "ALLOW"}
    state = tightest(result.lines)
    if state is not None:
        body["remaining"] = state.remaining
        headers[REMAINING] = remaining_text(state)
    if not result.would_allow:
        level = result.lines[result.denied_by or 0].line.level
        body["shadow_decision"] = headers[SHADOW] = f"DENY budget {level}"
    return body, headers


def record(r: ReservationRecord) -> dict[str, Any]:
    """A reservation as the store keeps it (GET, and the answer of a commit or release)."""
    unit = unit_of(r)
    committed = None if r.actual is None else r.actual.get(unit, 0)
    return {
        "id": r.id,
        "status": r.state,
        "unit": unit,
        "reserved": r.amounts.get(unit, 0),
        "amount": committed if committed is not None else r.amounts.get(unit, 0),
        "committed": committed,
        "expires_at_ms": r.deadline_ms,
    }


def balances(scope: Scope, lines: Sequence[LineBalance]) -> dict[str, Any]:
    """Every line of the scope path, and per unit the least remaining on it."""
    least: dict[str, LineBalance] = {}
    for line in lines:
        unit = line.line.unit
        if unit not in least or line.remaining < least[unit].remaining:
            least[unit] = line
    return {
        "tenant": scope.tenant,
        "scope": scope.path(),
        "remaining": {unit: _remaining(line) for unit, line in least.items()},
        "lines": [_line(line) for line in lines],
    }


def _remaining(line: LineBalance) -> dict[str, Any]:
    return {
        "units": line.remaining,
        "text": format_amount(line.remaining, line.line.unit),
        "level": line.line.level,
        "value": line.line.value,
    }


def _line(line: LineBalance) -> dict[str, Any]:
    return {
        "level": line.line.level,
        "value": line.line.value,
        "unit": line.line.unit,
        "period": line.period_id,
        "limit": line.line.limit,
        "spent": line.spent,
        "reserved": line.reserved,
        "credit": line.credit,
        "remaining": line.remaining,
        "text": format_amount(line.remaining, line.line.unit),
    }


def log_reserve(tenant: str, rid: str | None, ask: Ask, result: ReserveResult) -> None:
    """`{"event": "action", "op": "reserve", …}` on the `cycles.actions` logger."""
    _log(
        {
            "op": "reserve",
            "tenant": tenant,
            "reservation": rid,
            "action": ask.action,
            "unit": ask.unit,
            "amount": ask.amount,
            "decision": "ALLOW" if rid is not None else "DENY",
            "status": result.status,
        }
    )


def log_settle(op: str, tenant: str, r: ReservationRecord) -> None:
    actual = dict(r.actual) if r.actual is not None else None
    _log({"op": op, "tenant": tenant, "reservation": r.id, "state": r.state, "actual": actual})


def _log(fields: dict[str, Any]) -> None:
    log.info("%s", orjson.dumps({"event": "action", **fields}).decode())
