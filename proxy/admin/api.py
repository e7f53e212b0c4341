"""Admin endpoints: one function each; thin: parse → store → JSON.

A call's body is read only by its handler, so after the bearer check (auth.py): a call
without a valid token is refused before a byte of its body is read. The handler reads it as the
proxy port reads one (gateway.body.read_limited): at most MAX_BODY_BYTES (else 413), within
`timeouts.read_request` (else 408), so a client trickling a body holds no handler for longer.

Every mutating call accepts an `Idempotency-Key` header (see store/idempotency.py). Amounts go in as
decimal strings in the unit of the budget they touch, and come out as
`{"units": 123, "unit": "USD", "text": "0.000001 USD"}`. An answer that shows a new API key
(onboarding, key creation, rotation) shows it once: what is kept for a replay is the same answer
without the key (`issued`), so no key is ever stored in plain, not even for 24 hours. An answer
an earlier release kept (verbatim) is never replayed: 409 `idempotency_key_outdated`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from aiohttp import web

from proxy.admin import views
from proxy.admin.shared import idempotency, keys, ledger, read_body, runtime, tenants
from proxy.core.errors import BadRequest, Conflict, IdempotencyKeyReused, NotFound
from proxy.core.types import END_USER
from proxy.policy.runtime import Plan
from proxy.store.idempotency import VERSION, Stored, slot
from proxy.store.ledger.base import TenantStatus
from proxy.store.tenants import TenantClosed, TenantExists, TenantRecord

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ACTOR = "admin-api"
KEPT = web.ResponseKey("kept", bytes)
"""The body a replay of this answer gets, when it is not the body itself (a secret left out)."""
REPLAYED = "X-Cycles-Replayed"
MAX_BODY_BYTES = 64 * 1024
"""An admin call's body at most: a tenant's settings, a key's pins or an adjustment take a few
hundred bytes."""
BODY = web.RequestKey("admin_body", bytes)


async def raw_body(request: web.Request) -> bytes:
    """The call's body (module docstring), read once for the handler and its Idempotency-Key."""
    if BODY not in request:
        request[BODY] = await read_body(request, MAX_BODY_BYTES)
    return request[BODY]


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await raw_body(request)
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def ok(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def issued(data: Any, replayed: Any) -> web.Response:
    """201 with `data`, which shows a new key; a replay of the call gets `replayed`, the same
    answer without the key (views.shown_once), which is all that is kept."""
    response = ok(data, status=201)
    response[KEPT] = orjson.dumps(replayed)
    return response


def idempotent(handler: Handler) -> Handler:
    """Replay the stored answer for a repeated Idempotency-Key instead of acting twice."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return await handler(request)
        keys = idempotency(request)
        where = slot(request.method, request.path, key)
        body_hash = hashlib.sha256(await raw_body(request)).hexdigest()
        stored = await keys.begin(where, body_hash)
        if stored is not None:
            if stored.version != VERSION:
                raise _outdated()
            if stored.body_hash != body_hash:
                raise IdempotencyKeyReused("This Idempotency-Key was used with a different body.")
            if stored.answer is None:
                raise Conflict("A call with this Idempotency-Key is still running; retry.")
            return web.Response(
                body=stored.answer,
                status=stored.status,
                content_type="application/json",
                headers={REPLAYED: "true"},
            )
        try:
            response = await handler(request)
        except BaseException:
            await keys.abandon(where)
            raise
        answer = response.body if isinstance(response, web.Response) else None
        if isinstance(answer, bytes):
            kept = response.get(KEPT, answer)
            await keys.finish(where, Stored(body_hash, response.status, kept))
        return response

    return wrapped


def _outdated() -> Conflict:
    """A key an earlier release stored the answer for: that answer may hold an API key, so it is
    not replayed, and the call is not run again either (it may have taken effect)."""
    return Conflict(
        "This Idempotency-Key was first used before cycles-proxy was upgraded, and that "
        "release's kept answer is not replayed (it may hold an API key). Check whether the "
        "first call took effect (GET the tenant or its keys), then retry with a new "
        "Idempotency-Key if it did not.",
        code="idempotency_key_outdated",
    )


async def record_of(request: web.Request) -> TenantRecord:
    tenant = views.scope_value(request.match_info["tenant"], "tenant")
    record = await tenants(request).get_tenant(tenant)
    if record is None:
        raise NotFound(f"No tenant {tenant!r} in the store.", code="tenant_not_found")
    return record


def _plan(request: web.Request, name: Any) -> Plan:
    plans = runtime(request).policy.plans
    if not isinstance(name, str) or name not in plans:
        raise BadRequest(f"Unknown plan {name!r}; plans: {', '.join(plans)}.", param="plan")
    return plans[name]


def _timezone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(
            f"Unknown time zone {value!r}; use an IANA name.", param="timezone"
        ) from None
    return str(value)


def _anchor(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 31:
        raise BadRequest("'anchor_day' must be a day of the month, 1 to 31.", param="anchor_day")
    return value


def _record_alerts(value: Any) -> tuple[int, ...] | None:
    given = views.alerts(value)
    return None if given == "inherit" else given


def _mode(value: Any) -> Any:
    if value not in (None, "enforce", "shadow", "inherit"):
        raise BadRequest("'mode' must be enforce, shadow or inherit.", param="mode")
    return value


async def _changed(request: web.Request, record: TenantRecord) -> web.Response:
    runtime(request).forget_tenant(record.id)
    return ok(views.tenant_json(record, runtime(request).policy))


# -- tenants ---------------------------------------------------------------------------------


@idempotent
async def create_tenant(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)
    tenant = views.scope_value(views.require(body, "id"), "id")
    plan = _plan(request, views.require(body, "plan"))
    mode = _mode(body.get("mode"))
    record = TenantRecord(
        id=tenant,
        plan=plan.name,
        mode=None if mode in (None, "inherit") else mode,
        anchor_day=_anchor(body.get("anchor_day", 1)),
        timezone=_timezone(body.get("timezone", "UTC")),
        overrides=views.overrides(body.get("overrides", {}), plan),
        alerts=_record_alerts(body.get("alerts", "inherit")),
    )
    try:
        created = await tenants(request).create_tenant(record, actor=ACTOR)
    except TenantExists:
        raise Conflict(
            f"Tenant {tenant!r} already exists (or existed: closed ids are never reused)."
        ) from None
    plain, key = await keys(request).create(tenant)
    runtime(request).forget_tenant(tenant)
    tenant_json = views.tenant_json(created, runtime(request).policy)
    api_key = {"id": key.key_id, "key": plain, "prefix": key.prefix}
    return issued(
        {"tenant": tenant_json, "api_key": api_key},
        {"tenant": tenant_json, "api_key": views.shown_once(api_key, tenant)},
    )


async def get_tenant(request: web.Request) -> web.StreamResponse:
    return ok(views.tenant_json(await record_of(request), runtime(request).policy))


async def list_tenants(request: web.Request) -> web.StreamResponse:
    try:
        limit = min(max(int(request.query.get("limit", "100")), 1), 1000)
    except ValueError:
        raise BadRequest("'limit' must be a number.", param="limit") from None
    after = request.query.get("after")
    records = await tenants(request).list_tenants(after=after, limit=limit)
    policy = runtime(request).policy
    cursor = records[-1].id if len(records) == limit else None
    return ok({"data": [views.tenant_json(r, policy) for r in records], "next": cursor})


@idempotent
async def update_tenant(request: web.Request) -> web.StreamResponse:
    record = await record_of(request)
    body = await json_body(request)
    plan = _plan(request, body["plan"]) if "plan" in body else _plan(request, record.plan)
    changes: dict[str, Any] = {}
    if "plan" in body:
        changes["plan"] = plan.name
    if "mode" in body:
        changes["mode"] = _mode(body["mode"])
    if "overrides" in body:
        changes["overrides"] = views.overrides(body["overrides"], plan)
    if "anchor_day" in body:
        changes["anchor_day"] = _anchor(body["anchor_day"])
    if "timezone" in body:
        changes["timezone"] = _timezone(body["timezone"])
    if "alerts" in body:
        changes["alerts"] = views.alerts(body["alerts"])
    reason = views.text(body, "reason", default="") or ""
    try:
        updated = await tenants(request).update_tenant(
            record.id, actor=ACTOR, reason=reason, **changes
        )
    except TenantClosed:
        raise Conflict(f"Tenant {record.id!r} is closed and cannot change.") from None
    return await _changed(request, updated)


def _status_change(status: TenantStatus) -> Handler:
    @idempotent
    async def change(request: web.Request) -> web.StreamResponse:
        record = await record_of(request)
        body = await json_body(request)
        reason = views.text(body, "reason", default="") or ""
        try:
            updated, changed = await tenants(request).change_status(
                record.id,
                status,
                actor=ACTOR,
                reason=reason,
            )
        except TenantClosed:
            raise Conflict(f"Tenant {record.id!r} is closed; it cannot be reactivated.") from None
        if status == "closed" and changed:
            await keys(request).revoke_all(record.id)
        response = await _changed(request, updated)
        response.headers["X-Cycles-Changed"] = "true" if changed else "false"
        return response

    return change


suspend = _status_change("suspended")
reactivate = _status_change("active")
close = _status_change("closed")


# -- balances, adjustments, audit ------------------------------------------------------------


async def balances(request: web.Request) -> web.StreamResponse:
    """Every line but the end users' (there may be millions: the ledger keeps them apart and
    `balances` leaves them out; user_routes.py shows them)."""
    record = await record_of(request)
    rows = await ledger(request).balances(record.id)
    plan = runtime(request).policy.plans.get(record.plan)
    return ok({"tenant": record.id, "data": [views.balance_json(r, record, plan) for r in rows]})


def _value(request: web.Request, tenant: str, level: str, raw: Any) -> str:
    """A level's value as the ledger keeps it: an end user's as clients send it, kept as the
    policy's `user_ids` says (budget/end_users.py)."""
    if level == END_USER:
        return runtime(request).users.kept(tenant, raw, "value")
    return views.scope_value(raw, "value")


@idempotent
async def adjust(request: web.Request) -> web.StreamResponse:
    record = await record_of(request)
    body = await json_body(request)
    plan = _plan(request, record.plan)
    level = views.level(views.require(body, "level"))
    budget = plan.budget_for(level)
    if budget is None:
        raise BadRequest(f"Plan {plan.name!r} has no budget on {level!r}.", param="level")
    value = (
        record.id
        if level == "tenant"
        else _value(request, record.id, level, views.require(body, "value"))
    )
    amount = views.units(views.require(body, "amount"), budget.unit, "amount", signed=True)
    reason = views.text(body, "reason")
    if not reason:
        raise BadRequest("Say why: 'reason' is required for an adjustment.", param="reason")
    try:
        row = await tenants(request).adjust(
            record.id,
            level=level,
            value=value,
            unit=budget.unit,
            period=budget.period,
            amount=amount,
            actor=ACTOR,
            reason=reason,
        )
    except TenantClosed:
        raise Conflict(f"Tenant {record.id!r} is closed; its ledger cannot change.") from None
    return ok(views.balance_json(row, record, plan))


@idempotent
async def reset(request: web.Request) -> web.StreamResponse:
    record = await record_of(request)
    body = await json_body(request)
    level = views.level(body["level"]) if body.get("level") is not None else None
    given = body.get("value")
    value = None if given is None else _value(request, record.id, level or "", given)
    if level == END_USER and value is None:
        raise BadRequest(
            "Name the end user: a reset of level 'user' needs its 'value' (end users are reset "
            "one at a time; a reset without 'level' resets the tenant's own scopes only).",
            param="value",
        )
    reason = views.text(body, "reason")
    if not reason:
        raise BadRequest("Say why: 'reason' is required for a reset.", param="reason")
    try:
        units = runtime(request).policy.units
        rows = await tenants(request).reset(
            record.id, level=level, value=value, actor=ACTOR, reason=reason, units=units
        )
    except TenantClosed:
        raise Conflict(f"Tenant {record.id!r} is closed; its ledger cannot change.") from None
    plan = runtime(request).policy.plans.get(record.plan)
    return ok({"tenant": record.id, "data": [views.balance_json(r, record, plan) for r in rows]})


async def audit(request: web.Request) -> web.StreamResponse:
    record = await record_of(request)
    query = request.query
    since, until = views.millis(query, "since"), views.millis(query, "until")
    try:
        limit = min(max(int(query.get("limit", "1000")), 1), 10000)
    except ValueError:
        raise BadRequest("'limit' must be a number.", param="limit") from None
    entries = await tenants(request).audit(
        record.id,
        since_ms=since,
        until_ms=until,
        run=query.get("run"),
        decision=query.get("decision"),
        limit=limit,
    )
    rows = [views.audit_json(entry) for entry in entries]
    if query.get("format") == "jsonl":
        body = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        return web.Response(body=body, content_type="application/x-ndjson")
    return ok({"tenant": record.id, "data": rows})
