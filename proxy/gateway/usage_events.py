"""Usage events: one CloudEvents 1.0 event per settled call and per expiry the sweeper charged.

The settle builds the call's part (`call_json`: what only the proxy knows, the models, tokens
and request id) and the ledger writes it to the outbox in the same atomic step as the charge,
with what that step added to `spent` (store/ledger/outbox.py). The sender
(usage_sender.py) turns each outbox entry into the event (`cloud_event`):

    {"specversion": "1.0", "type": "io.cycles.usage.v1", "id": <reservation id>,
     "source": <events.source or "cycles-proxy">, "subject": <tenant>, "time": <RFC 3339>,
     "datacontenttype": "application/json",
     "data": {"tenant", "reservation", "outcome": committed | released | expired_charged |
              expired_released, "scope": {<level>: <value>, ...}, "end_user",
              "lines": [{"level", "value", "unit", "period"}], "period", "endpoint", "model"
              (asked), "sent_model", "tokens" ({"prompt", "completion", "cached", ...}; null
              without a usage report), "cost": [{"unit", "units", "amount"}], "cost_usd"
              (the USD amount alone, "0" without one: what a meter sums), "decision", "rule",
              "request_id"}}

`id` is the reservation id, so a consumer deduplicates redeliveries by it (with `source`). An
expiry's event has the id `<reservation id>.expired` (a commit arriving after it adds its own
event, whose cost is only what the commit added: it may be negative). A commit after a release
is `<reservation id>.after-release`, and a settle of a record the store no longer has (its
tombstone expired: a second charge) `<reservation id>.missing.<ms>`, assigned when the settle
ran (store/ledger/outbox.py `event_id`): the id dedupes redeliveries of one charge, never two
distinct charges. Summed over the events, `cost` is what usage added to the ledger's `spent`:
an admin reset is not usage and has no event (README "Usage events"). `units` is the ledger's
integer (USD in 10**-8 dollars) and `amount` the same as a decimal string in the unit (USD
dollars).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from proxy.metering.pricing import Usage
from proxy.policy.units import USD_PLACES
from proxy.store.ledger.base import OutboxEntry

TYPE = "io.cycles.usage.v1"
END_USER = "user"
TOKENS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "cache_write_unsplit_tokens",
    "audio_prompt_tokens",
    "audio_completion_tokens",
    "image_prompt_tokens",
    "image_completion_tokens",
)


def call_json(
    *,
    request_id: str,
    endpoint: str,
    model: str,
    sent_model: str,
    usage: Usage | None,
    decision: str,
    rule: str | None,
    fields: Sequence[str],
) -> str:
    """The call's part of its event, as the outbox keeps it (`fields`: the reservation's field
    prefixes, which say its scope and periods)."""
    return orjson.dumps(
        {
            "request_id": request_id,
            "endpoint": endpoint,
            "model": model,
            "sent_model": sent_model,
            "tokens": None if usage is None else tokens(usage),
            "decision": decision,
            "rule": rule,
            "lines": list(fields),
        }
    ).decode()


def action_json(
    request_id: str | None,
    fields: Sequence[str],
    *,
    endpoint: str = "reservations",
    model: str | None = None,
    tool: tuple[str, str] | None = None,
) -> str:
    """An action reservation's part of its event (POST /v1/cycles/reservations/{id}/commit or
    release; an MCP tool call's: endpoint `mcp`, model the tool as `mcp:<server>/<tool>`, and
    `tool` its server and name apart): no tokens; `request_id` the settling request's
    X-Request-Id, if any."""
    call: dict[str, Any] = {"request_id": request_id, "endpoint": endpoint, "model": model}
    call |= {"sent_model": None, "tokens": None, "decision": "ALLOW", "rule": None}
    if tool is not None:
        call["tool"] = {"server": tool[0], "name": tool[1]}
    return orjson.dumps(call | {"lines": list(fields)}).decode()


def relined(call: str, fields: Sequence[str]) -> str:
    """`call` with the lines of the reservation it is finally written under (a call forwarded
    unbudgeted knows them only when its spilled charge is written: spill.py)."""
    return orjson.dumps(orjson.loads(call) | {"lines": list(fields)}).decode()


def tokens(usage: Usage) -> dict[str, int]:
    """Tokens by kind (`prompt`, `completion`, `cached`, …; hosted tool calls by tool)."""
    counts = {name.removesuffix("_tokens"): getattr(usage, name) for name in TOKENS}
    counts = {kind: n for kind, n in counts.items() if n or kind in ("prompt", "completion")}
    return counts | {f"tool_calls.{tool}": n for tool, n in usage.tool_calls}


def cloud_event(entry: OutboxEntry, source: str) -> dict[str, Any]:
    """The CloudEvent of an outbox entry."""
    f = entry.fields
    expired = f.get("kind") == "expire"
    charged = _amounts(f.get("charged", "-"))
    call: dict[str, Any] = {} if expired else orjson.loads(f.get("event", "{}"))
    prefixes = [p for p in f.get("fields", "").split(",") if p] if expired else []
    outcome = _outcome(expired, f.get("state"), f.get("charged", "-"))
    rid = f.get("reservation", "")
    return {
        "specversion": "1.0",
        "type": TYPE,
        "id": f"{rid}.expired" if expired else f.get("id", rid),
        "source": source,
        "subject": entry.tenant,
        "time": _time(entry.entry_id),
        "datacontenttype": "application/json",
        "data": {
            "tenant": entry.tenant,
            "reservation": rid,
            "outcome": outcome,
            **_scope(call.pop("lines", None) or prefixes),
            **{k: call.get(k) for k in ("endpoint", "model", "sent_model", "tokens")},
            "cost": [cost(unit, units) for unit, units in charged.items()],
            "cost_usd": cost("USD", charged.get("USD", 0))["amount"],
            "decision": call.get("decision", "EXPIRED" if expired else None),
            "rule": call.get("rule"),
            "request_id": call.get("request_id"),
            **({"tool": call["tool"]} if "tool" in call else {}),
        },
    }


def cost(unit: str, units: int) -> dict[str, Any]:
    """One unit's cost: the ledger's integer and the decimal amount (USD in dollars)."""
    places = USD_PLACES if unit == "USD" else 0
    amount = format(Decimal(units).scaleb(-places), "f")
    return {"unit": unit, "units": units, "amount": amount}


def _outcome(expired: bool, state: str | None, charged: str) -> str:
    """A settle's `state` says a commit (which may have charged nothing: `charged` '-') from
    a release; an expiry's `charged` is '-' when it released."""
    if expired:
        return "expired_charged" if charged != "-" else "expired_released"
    if state is not None:
        return "committed" if state == "COMMITTED" else "released"
    return "committed" if charged != "-" else "released"


def _scope(prefixes: list[str]) -> dict[str, Any]:
    """The scope path (level -> value), the end user, the lines and the first line's period."""
    lines = []
    for prefix in prefixes:
        level, value, unit, period = prefix.split("|")
        lines.append({"level": level, "value": value, "unit": unit, "period": period})
    scope = {line["level"]: line["value"] for line in lines}
    return {
        "scope": scope,
        "end_user": scope.get(END_USER),
        "lines": lines,
        "period": lines[0]["period"] if lines else None,
    }


def _amounts(text: str) -> Mapping[str, int]:
    if text == "-":
        return {}
    return {unit: int(n) for unit, n in (part.split("=") for part in text.split(","))}


def _time(entry_id: str) -> str:
    """RFC 3339 from the entry's id (`<ms>-<seq>`: when the settle ran, in the store's clock)."""
    ms = int(entry_id.split("-")[0])
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
