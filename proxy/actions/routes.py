"""The reservation API's handlers (the package docstring says what each answers). Thin:
identify, parse, one ledger call (a commit or release: a lookup, then the settle), answer."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, NamedTuple

import orjson
from aiohttp import web

from proxy.actions import views
from proxy.actions.asks import MAX_BODY_BYTES, Ask, parse_ask, parse_commit, parse_release
from proxy.actions.reserving import (
    action_lines,
    check_commit,
    check_id,
    check_release,
    check_scope,
    commit_amount,
    lines_for,
    may_settle,
    not_found,
    refusal,
    reservation_of,
    reserve_request,
    unit_of,
)
from proxy.budget.directory import TenantConfig
from proxy.budget.scopes import Scope, budget_lines
from proxy.gateway.admission import ACTION, ACTION_REPLAY, ADMISSION, Admission
from proxy.gateway.events import EVENTS, CallDecided, CallDenied, CallSettled
from proxy.gateway.usage_events import action_json
from proxy.policy.runtime import Policy
from proxy.store.ledger.base import ReservationRecord, ReserveRequest, ReserveResult

RESERVATIONS = "/v1/cycles/reservations"


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(RESERVATIONS, reserve)
    router.add_get(RESERVATIONS + "/{id}", get)
    router.add_post(RESERVATIONS + "/{id}/commit", commit)
    router.add_post(RESERVATIONS + "/{id}/release", release)
    router.add_get("/v1/cycles/balances", balances)


async def reserve(request: web.Request) -> web.StreamResponse:
    admission = request.app[ADMISSION]
    scope = await admission.identify(request)
    raw = await admission.body(request, MAX_BODY_BYTES)
    ask = parse_ask(raw, admission.policy)
    tenant = await admission.tenant(scope.tenant, ACTION)
    lines_for(tenant.plan, scope, ask.unit, tenant.overrides)  # a 400 before any store is written
    claim = await admission.claim(
        request, scope, raw, step=ACTION_REPLAY, body_key=ask.idempotency_key
    )
    if isinstance(claim, web.Response):
        # A replay reserves nothing, so no reserve script sees the tenant's status.
        await admission.check_active(scope.tenant)
        return claim
    async with claim:
        return await claim.run(_reserve(request, admission, scope, tenant, ask))


class Made(NamedTuple):
    """A reserve sent to the ledger, when, and its result."""

    request: ReserveRequest
    started_ms: int
    result: ReserveResult


async def _reserve(
    request: web.Request, admission: Admission, scope: Scope, tenant: TenantConfig, ask: Ask
) -> web.Response:
    """Reserve, with the tenant's settings fresh (as an LLM call: admission.fresh)."""

    async def attempt(config: TenantConfig) -> Made:
        made = reserve_request(config, scope, ask)
        started_ms = time.time_ns() // 1_000_000
        reserving = admission.ledger.reserve(made)
        return Made(
            made, started_ms, await admission.store_op("reserve", reserving, abandoned=made)
        )

    what = "this reservation was made"
    made = await admission.fresh(
        scope.tenant, tenant, attempt, lambda made: made.result.stale, step=ACTION, what=what
    )
    result, events = made.result, request.app[EVENTS]
    refused = refusal(result, ask)
    views.log_reserve(scope.tenant, None if refused else made.request.reservation_id, ask, result)
    if refused is not None:
        events.emit(CallDenied(request, scope.tenant, refused, result))
        raise refused
    events.emit(CallDecided(request, scope.tenant, {ask.unit: ask.amount}))
    # By this process's clock; the store's decides (GET shows it).
    expires = made.started_ms + (ask.ttl_ms or admission.policy.reservations.cap_ms)
    body, headers = views.reserved(result, ask, expires)
    return _json(body, status=201, headers=headers)


async def get(request: web.Request) -> web.StreamResponse:
    *_, record = await _record(request)
    return _json(views.record(record))


async def commit(request: web.Request) -> web.StreamResponse:
    admission, tenant, record = await _record(request)
    amount = parse_commit(await admission.body(request, MAX_BODY_BYTES))
    check_commit(record)
    if record.state == "COMMITTED":
        return _json(views.record(record))
    actual = {unit_of(record): commit_amount(record, amount)}
    reservation = reservation_of(record, tenant)
    event = _usage_event(request, admission.policy, record)
    settling = admission.ledger.commit(
        reservation, actual, final_release=True, known_only=True, event=event
    )
    result = await admission.store_op("commit", settling)
    # A release (or an expiry) won the race, or the record is gone since the lookup.
    check_commit(dataclasses.replace(record, state=result.state))
    if result.first:
        request.app[EVENTS].emit(CallSettled(request, tenant.id, result.charged, result))
    else:
        actual = dict(result.charged)  # a commit racing this one won: its amount stands
    done = ReservationRecord(
        record.id, "COMMITTED", record.deadline_ms, record.amounts, record.fields, actual=actual
    )
    views.log_settle("commit", tenant.id, done)
    return _json(views.record(done))


async def release(request: web.Request) -> web.StreamResponse:
    admission, tenant, record = await _record(request)
    parse_release(await admission.body(request, MAX_BODY_BYTES))
    check_release(record)
    if record.state != "OPEN":
        return _json(views.record(record))
    event = _usage_event(request, admission.policy, record)
    releasing = admission.ledger.release(
        reservation_of(record, tenant), known_only=True, event=event
    )
    result = await admission.store_op("release", releasing)
    done = ReservationRecord(
        record.id, result.state, record.deadline_ms, record.amounts, record.fields
    )
    check_release(done)  # a commit racing this release won, or the record is gone since
    views.log_settle("release", tenant.id, done)
    return _json(views.record(done))


def _usage_event(request: web.Request, policy: Policy, record: ReservationRecord) -> str | None:
    """The action's part of its usage event; None when events are off."""
    if not policy.events.sinks:
        return None
    return action_json(request.headers.get("X-Request-Id"), record.fields)


async def balances(request: web.Request) -> web.StreamResponse:
    """Every budget line of the caller's scope path (LLM calls' and actions') in its current
    period, and per unit the least remaining on the path: what the caller can still spend."""
    admission = request.app[ADMISSION]
    scope = await admission.identify(request)
    tenant = await admission.tenant(scope.tenant, ACTION)
    await admission.check_active(scope.tenant)
    lines = [
        *budget_lines(tenant.plan, scope, tenant.overrides),
        *action_lines(tenant.plan, scope),
    ]
    reading = admission.ledger.lines(scope.tenant, lines, tenant.utc_offset_min())
    return _json(views.balances(scope, await admission.store_op("lines", reading)))


async def _record(request: web.Request) -> tuple[Admission, TenantConfig, ReservationRecord]:
    """The caller's tenant and the reservation the path names, looked up under that tenant; one
    its key could not have made (another agent's, for a key pinned to an agent) is not found
    either."""
    admission = request.app[ADMISSION]
    scope = await admission.identify(request)
    rid = check_id(request.match_info["id"])
    tenant = await admission.tenant(scope.tenant, ACTION)
    looking = admission.ledger.reservation(scope.tenant, rid)
    record = await admission.store_op("lookup", looking)
    if record is None or not may_settle(scope, record):
        raise not_found(rid)
    check_scope(scope, record)
    return admission, tenant, record


def _json(
    body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )
