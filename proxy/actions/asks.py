"""What a caller sends to the reservation API, checked completely before anything is reserved:
every mistake is a 400 naming the field and what to send instead. No I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.core.errors import BadRequest
from proxy.core.types import MAX_AMOUNT, RISK_POINTS, Unit, is_action_unit
from proxy.policy.runtime import Policy

MAX_BODY_BYTES = 16 * 1024
"""Action bodies are small JSON objects."""
MAX_KEY_CHARS = 255
_ASK_FIELDS = ("action", "unit", "amount", "idempotency_key", "ttl")


@dataclass(frozen=True, slots=True)
class Ask:
    """A checked reservation request."""

    unit: Unit
    amount: int
    action: str | None = None
    idempotency_key: str | None = None
    ttl_ms: int | None = None


def parse_ask(raw: bytes, policy: Policy) -> Ask:
    """The body of POST /v1/cycles/reservations, checked completely (400 naming the field)."""
    body = _object(raw, _ASK_FIELDS)
    action, unit, amount = body.get("action"), body.get("unit"), body.get("amount")
    if action is not None and (unit is not None or amount is not None):
        raise BadRequest(
            "Give either 'action' (priced by the policy) or 'unit' and 'amount', not both.",
            code="invalid_reservation",
        )
    ttl = _ttl(body.get("ttl"), policy.reservations.cap_ms // 1000)
    key = _key(body.get("idempotency_key"))
    if action is not None:
        price = policy.actions.get(action) if isinstance(action, str) else None
        if price is None:
            raise BadRequest(
                f"Unknown action {action!r}; the policy prices {_names(policy.actions)}. Name "
                "one of them, or give 'unit' and 'amount'.",
                code="unknown_action",
                param="action",
            )
        return Ask(price.unit, price.amount, price.name, key, ttl)
    if unit is None or amount is None:
        raise BadRequest(
            "Say what to reserve: 'action' (e.g. \"send_email\"), or 'unit' "
            f"({', '.join(action_units(policy)) or RISK_POINTS}) and 'amount'.",
            code="invalid_reservation",
        )
    return Ask(_unit(unit, policy), amount_of(amount, "amount", low=1), None, key, ttl)


def parse_commit(raw: bytes) -> int | None:
    """The body of a commit: `{"amount": n}` (what the action actually cost), or nothing."""
    if not raw.strip():
        return None
    amount = _object(raw, ("amount",)).get("amount")
    return None if amount is None else amount_of(amount, "amount", low=0)


def parse_release(raw: bytes) -> None:
    """A release takes no fields (an empty body or `{}`)."""
    if raw.strip():
        _object(raw, ())


def _object(raw: bytes, fields: Sequence[str]) -> dict[str, Any]:
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise BadRequest("The body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", code="invalid_json")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        allowed = ", ".join(fields) or "none"
        raise BadRequest(
            f"Unknown field {unknown[0]!r}; the fields are: {allowed}.",
            code="unknown_field",
            param=unknown[0],
        )
    return body


def amount_of(value: object, name: str, *, low: int) -> int:
    """A whole number of units in [low, 2**52): JSON integers only (never a float or text)."""
    if type(value) is not int or not low <= value < MAX_AMOUNT:
        raise BadRequest(
            f"'{name}' must be a whole number of units from {low} to 2**52 - 1, written as a "
            f"JSON integer; got {orjson.dumps(value).decode()}.",
            code="invalid_amount",
            param=name,
        )
    return value


def action_units(policy: Policy) -> list[Unit]:
    """The action units the policy knows (some plan budgets them, or some action or tool is
    priced in them), sorted."""
    return sorted(unit for unit in policy.units if is_action_unit(unit))


def _unit(value: object, policy: Policy) -> Unit:
    known = action_units(policy)
    if isinstance(value, str) and value in known:
        return value
    listed = ", ".join(known) or "none: the policy budgets no action unit"
    raise BadRequest(
        f"'unit' must be an action unit the policy knows ({listed}); got "
        f"{orjson.dumps(value).decode()} (USD and TOKENS budgets are for LLM calls, which the "
        "proxy prices itself).",
        code="invalid_unit",
        param="unit",
    )


def _ttl(value: object, cap_s: int) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= cap_s:
        raise BadRequest(
            f"'ttl' must be whole seconds from 1 to {cap_s} (reservations.cap_seconds); got "
            f"{orjson.dumps(value).decode()}.",
            code="invalid_ttl",
            param="ttl",
        )
    return value * 1000


def _key(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_KEY_CHARS:
        raise BadRequest(
            f"'idempotency_key' must be a string of 1 to {MAX_KEY_CHARS} characters; a UUID works.",
            code="invalid_idempotency_key",
            param="idempotency_key",
        )
    return value


def _names(named: Mapping[str, object]) -> str:
    names = sorted(named)
    if not names:
        return "no actions"
    shown = ", ".join(names[:20])
    return shown + (f" and {len(names) - 20} more" if len(names) > 20 else "")
