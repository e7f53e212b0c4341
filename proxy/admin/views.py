"""JSON shapes of the admin API, and parsing what operators send. No I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from proxy.core.errors import BadRequest
from proxy.core.types import SCOPE_VALUE as VALUE
from proxy.metering.pricing import format_amount
from proxy.policy.runtime import LEVELS, Plan, Policy
from proxy.policy.units import (
    THRESHOLD_HINT,
    USD_PLACES,
    AmountError,
    basis_points,
    percent,
    to_units,
)
from proxy.store.ledger.base import BalanceRow
from proxy.store.tenants import AuditEntry, TenantRecord


def tenant_json(record: TenantRecord, policy: Policy) -> dict[str, Any]:
    plan = policy.plans.get(record.plan)
    return {
        "id": record.id,
        "plan": record.plan,
        "status": record.status,
        "mode": record.mode or policy.mode,
        "mode_override": record.mode,
        "anchor_day": record.anchor_day,
        "timezone": record.timezone,
        "overrides": {
            level: _amount_json(units, _unit(plan, level))
            for level, units in record.overrides.items()
        },
        "alerts": alerts_json(record, policy),
        "version": record.version,
        "created_ms": record.created_ms,
    }


def _unit(plan: Plan | None, level: str) -> str:
    budget = plan.budget_for(level) if plan is not None else None
    return budget.unit if budget is not None else "USD"


def _amount_json(units: int, unit: str) -> dict[str, Any]:
    return {"units": units, "unit": unit, "text": format_amount(units, unit)}


def balance_json(row: BalanceRow, record: TenantRecord | None, plan: Plan | None) -> dict[str, Any]:
    budget = plan.budget_of(row.level, row.unit) if plan is not None else None
    limit: int | None = None
    if budget is not None:
        limit = budget.limit_with(record.overrides if record is not None else {})
    out: dict[str, Any] = {
        "level": row.level,
        "value": row.value,
        "unit": row.unit,
        "period": row.period_id,
        "spent": _amount_json(row.spent, row.unit),
        "reserved": _amount_json(row.reserved, row.unit),
        "credit": _amount_json(row.credit, row.unit),
        "limit": None,
        "remaining": None,
        "debt": None,
    }
    if limit is not None:
        remaining = limit + row.credit - row.spent - row.reserved
        out["limit"] = _amount_json(limit, row.unit)
        out["remaining"] = _amount_json(remaining, row.unit)
        out["debt"] = _amount_json(max(0, -remaining), row.unit)
    return out


def shown_once(key: dict[str, Any], tenant: str) -> dict[str, Any]:
    """A new key's answer as a replay gives it: the key itself left out (it was shown once, to
    the first call, and only its hash is stored), saying so and how to get another."""
    rotate = f"POST /admin/v1/tenants/{tenant}/keys/{key['id']}/rotate"
    message = (
        f"API key {key['id']} was shown once, in the first answer to this Idempotency-Key, and "
        f"is not stored. If it was lost, rotate it ({rotate})."
    )
    return {**key, "key": None, "shown_once": True, "message": message}


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at_ms": entry.at_ms, "kind": entry.kind, **entry.fields}


def require(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise BadRequest(f"Missing field {name!r}.", param=name)
    return body[name]


def text(body: dict[str, Any], name: str, *, default: str | None = None) -> str | None:
    value = body.get(name, default)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name!r} must be a string.", param=name)
    return value


def scope_value(value: Any, name: str) -> str:
    if not isinstance(value, str) or not VALUE.fullmatch(value):
        raise BadRequest(
            f"{name!r} must be 1 to 128 characters from A-Z a-z 0-9 _ . - (not '-' alone)",
            param=name,
        )
    return value.lower()


_MILLIS = re.compile(r"\d{1,19}")
MAX_MILLIS = 2**63 - 1


def millis(query: Mapping[str, str], name: str) -> int | None:
    """A time in a query, in milliseconds since 1970 (an audit entry's id is one), if given."""
    raw = query.get(name)
    if raw is None:
        return None
    if not _MILLIS.fullmatch(raw) or int(raw) > MAX_MILLIS:
        raise BadRequest(
            f"{name!r} is a time in milliseconds since 1970, written in digits: 0 to "
            f"{MAX_MILLIS}; not {raw[:40]!r}.",
            param=name,
        )
    return int(raw)


def level(value: Any, name: str = "level") -> str:
    if value not in LEVELS:
        raise BadRequest(f"{name!r} must be one of {', '.join(LEVELS)}.", param=name)
    return str(value)


MAX_EXPONENT = 40
"""An amount's decimal exponent is refused beyond this before any arithmetic: far past what
units hold either way (2**52 units; 8 decimal places), and a huge one would be worked out."""


def units(value: Any, unit: str, name: str, *, signed: bool = False) -> int:
    """A decimal amount as operators write it ("12.50" USD, "1000" TOKENS) → integer units."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRequest(f'{name!r} must be a decimal string such as "12.50".', param=name)
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise BadRequest(f"{name!r} is not a number: {str(value)[:40]!r}.", param=name) from None
    if not amount.is_finite() or not -MAX_EXPONENT <= amount.adjusted() <= MAX_EXPONENT:
        raise BadRequest(
            f'{name!r} must be a finite decimal number such as "12.50", below 2**52 units; '
            f"not {str(value)[:40]!r}.",
            param=name,
        )
    negative = amount.is_signed()
    if negative and not signed:
        raise BadRequest(f"{name!r} must not be negative.", param=name)
    try:
        scaled = to_units(abs(amount), USD_PLACES if unit == "USD" else 0, name, unit)
    except AmountError as exc:
        raise BadRequest(str(exc), param=name) from None
    return -scaled if negative else scaled


def alerts(value: Any) -> tuple[int, ...] | Literal["inherit"]:
    """{"thresholds": ["50%", "80%"]} in basis points, or "inherit" (the policy's for the
    tenant's plan)."""
    if value == "inherit":
        return "inherit"
    thresholds = value.get("thresholds") if isinstance(value, dict) else None
    if not isinstance(thresholds, list) or set(value) != {"thresholds"}:
        raise BadRequest(
            """'alerts' must be {"thresholds": ["50%", "80%"]} ([] for none) or "inherit".""",
            param="alerts",
        )
    out = []
    for i, written in enumerate(thresholds):
        bp = basis_points(written)
        if bp is None:
            param = f"alerts.thresholds[{i}]"
            message = f"{param}: {written!r} is not an alert threshold; {THRESHOLD_HINT}."
            raise BadRequest(message, param=param)
        out.append(bp)
    return tuple(sorted(set(out)))


def alerts_json(record: TenantRecord, policy: Policy) -> dict[str, Any]:
    """The tenant's thresholds and where they come from: its record, or the policy."""
    thresholds = record.alerts
    if thresholds is None:
        plan = policy.plans.get(record.plan)
        thresholds = () if plan is None else policy.alerts_for(record.id, plan)
    source = "policy" if record.alerts is None else "tenant"
    return {"thresholds": [percent(bp) for bp in thresholds], "source": source}


def overrides(value: Any, plan: Plan) -> dict[str, int]:
    """{"tenant": "80", "run": "5"} in the plan's units for each level."""
    if not isinstance(value, dict):
        raise BadRequest("'overrides' must map scope levels to limits.", param="overrides")
    out: dict[str, int] = {}
    for name, amount in value.items():
        budget = plan.budget_for(level(name, f"overrides.{name}"))
        if budget is None:
            raise BadRequest(
                f"Plan {plan.name!r} has no budget on {name!r} to override.",
                param=f"overrides.{name}",
            )
        out[name] = units(amount, budget.unit, f"overrides.{name}")
    return out
