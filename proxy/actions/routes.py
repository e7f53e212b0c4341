"""The reservation API's handlers (the package docstring says what each answers). Thin:
identify, parse, one ledger call (a commit or release: a lookup, then the settle), answer."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

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
from proxy.budget.directory import TenantConfig, unknown_tenant
from proxy.budget.scopes import Scope, budget_lines
from proxy.core.errors import AmountOutOfRange, BadRequest, LedgerUnavailable, ServiceUnavailable
from proxy.gateway import alerts, identity, observe, replay, standing
from proxy.gateway.body import read_limited
from proxy.gateway.context import RUNTIME, Runtime
from proxy.store.ledger.base import ReservationRecord, ReserveRequest, SettleResult

T = TypeVar("T")
RESERVATIONS = "/v1/cycles/reservations"


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(RESERVATIONS, reserve)
    router.add_get(RESERVATIONS + "/{id}", get)
    router.add_post(RESERVATIONS + "/{id}/commit", commit)
    router.add_post(RESERVATIONS + "/{id}/release", release)
    router.add_get("/v1/cycles/balances", balances)


async def reserve(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    scope = await identity.identify(request, rt)
    raw = await read_limited(request, MAX_BODY_BYTES, rt)
    ask = parse_ask(raw, rt.policy)
    tenant = await _tenant(rt, scope.tenant)
    lines_for(tenant.plan, scope, ask.unit)  # a 400 before any store is written
    claim = await replay.begin(
        rt.replays, request, scope, raw, fail_open=False, key=_key(request, ask)
    )
    if isinstance(claim, web.Response):
        # A replay reserves nothing, so no reserve script sees the tenant's status.
        await standing.check_active(rt, scope.tenant)
        return claim
    async with claim:
        return await claim.run(_reserve(rt, scope, tenant, ask))


async def _reserve(rt: Runtime, scope: Scope, tenant: TenantConfig, ask: Ask) -> web.Response:
    """Reserve; when the tenant's record changed since it was cached, reload it and redo it once
    (as an LLM call does)."""
    for attempt in range(2):
        request = reserve_request(tenant, scope, ask)
        started_ms = time.time_ns() // 1_000_000
        result = await _ledger(rt, "reserve", rt.ledger.reserve(request), abandoned=request)
        if not result.stale or attempt:
            break
        rt.forget_tenant(scope.tenant)
        tenant = await _tenant(rt, scope.tenant)
    if result.stale:
        raise ServiceUnavailable(
            "The tenant's settings changed twice while this reservation was made; retry.",
            retry_after=1,
            code="tenant_changing",
        )
    refused = refusal(result, ask)
    views.log_reserve(scope.tenant, None if refused else request.reservation_id, ask, result)
    if refused is not None:
        alerts.first_deny(rt, result, scope.tenant)
        raise refused
    if rt.metrics is not None:
        rt.metrics.reserved.labels(ask.unit).inc(ask.amount)
    # By this process's clock; the store's decides (GET shows it).
    expires = started_ms + (ask.ttl_ms or rt.policy.reservations.cap_ms)
    body, headers = views.reserved(result, ask, expires)
    return _json(body, status=201, headers=headers)


async def get(request: web.Request) -> web.StreamResponse:
    *_, record = await _record(request)
    return _json(views.record(record))


async def commit(request: web.Request) -> web.StreamResponse:
    rt, tenant, record = await _record(request)
    amount = parse_commit(await read_limited(request, MAX_BODY_BYTES, rt))
    check_commit(record)
    if record.state == "COMMITTED":
        return _json(views.record(record))
    actual = {unit_of(record): commit_amount(record, amount)}
    reservation = reservation_of(record, tenant)
    settling = rt.ledger.commit(reservation, actual, final_release=True, known_only=True)
    result = await _ledger(rt, "commit", settling)
    # A release (or an expiry) won the race, or the record is gone since the lookup.
    check_commit(dataclasses.replace(record, state=result.state))
    if result.first:
        alerts.notifier(rt)(reservation, result)
        _count(rt, tenant.id, result)
    else:
        actual = dict(result.charged)  # a commit racing this one won: its amount stands
    done = ReservationRecord(
        record.id, "COMMITTED", record.deadline_ms, record.amounts, record.fields, actual=actual
    )
    views.log_settle("commit", tenant.id, done)
    return _json(views.record(done))


async def release(request: web.Request) -> web.StreamResponse:
    rt, tenant, record = await _record(request)
    parse_release(await read_limited(request, MAX_BODY_BYTES, rt))
    check_release(record)
    if record.state != "OPEN":
        return _json(views.record(record))
    releasing = rt.ledger.release(reservation_of(record, tenant), known_only=True)
    result = await _ledger(rt, "release", releasing)
    done = ReservationRecord(
        record.id, result.state, record.deadline_ms, record.amounts, record.fields
    )
    check_release(done)  # a commit racing this release won, or the record is gone since
    views.log_settle("release", tenant.id, done)
    return _json(views.record(done))


async def balances(request: web.Request) -> web.StreamResponse:
    """Every budget line of the caller's scope path (LLM calls' and actions') in its current
    period, and per unit the least remaining on the path: what the caller can still spend."""
    rt = request.app[RUNTIME]
    scope = await identity.identify(request, rt)
    tenant = await _tenant(rt, scope.tenant)
    await standing.check_active(rt, scope.tenant)
    lines = [
        *budget_lines(tenant.plan, scope, tenant.overrides),
        *action_lines(tenant.plan, scope),
    ]
    now = await _ledger(rt, "lines", rt.ledger.lines(scope.tenant, lines, tenant.utc_offset_min()))
    return _json(views.balances(scope, now))


async def _record(request: web.Request) -> tuple[Runtime, TenantConfig, ReservationRecord]:
    """The caller's tenant and the reservation the path names, looked up under that tenant; one
    its key could not have made (another agent's, for a key pinned to an agent) is not found
    either."""
    rt = request.app[RUNTIME]
    scope = await identity.identify(request, rt)
    rid = check_id(request.match_info["id"])
    tenant = await _tenant(rt, scope.tenant)
    record = await _ledger(rt, "lookup", rt.ledger.reservation(scope.tenant, rid))
    if record is None or not may_settle(scope, record):
        raise not_found(rid)
    check_scope(scope, record)
    return rt, tenant, record


async def _tenant(rt: Runtime, tenant: str) -> TenantConfig:
    try:
        config = await rt.directory.get(tenant)
    except LedgerUnavailable:
        raise _unavailable() from None
    if config is None:
        raise unknown_tenant(tenant)
    return config


async def _ledger(
    rt: Runtime, op: str, call: Awaitable[T], *, abandoned: ReserveRequest | None = None
) -> T:
    """One store operation, timed; an unreachable store is 503 (a lost one is 503 too, app.py),
    a sum the ledger could no longer hold exactly is 400 (nothing was written). A reserve
    (`abandoned`) that may have run all the same is released by its id later (gateway/spill.py)."""
    try:
        return await observe.ledger_op(rt.metrics, op, call)
    except LedgerUnavailable as exc:
        if abandoned is not None and exc.maybe_ran:
            rt.fail_open.spill.add_abandoned(abandoned)
        raise _unavailable() from None
    except AmountOutOfRange:
        raise BadRequest(
            f"This {op} would take a budget line's spent, reserved or credit beyond the 2**53 - 1 "
            "units the ledger holds exactly, so nothing was written. Use smaller amounts.",
            code="amount_out_of_range",
        ) from None


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The budget ledger is unreachable, so nothing was reserved or settled. Retry shortly.",
        retry_after=2,
    )


def _key(request: web.Request, ask: Ask) -> str | None:
    """The idempotency key: the body's, or the header's (they must agree)."""
    header = replay.key_of(request.headers)
    if header is not None and ask.idempotency_key is not None and header != ask.idempotency_key:
        raise BadRequest(
            "The Idempotency-Key header and the body's idempotency_key differ; send one.",
            code="invalid_idempotency_key",
        )
    return ask.idempotency_key or header


def _count(rt: Runtime, tenant: str, result: SettleResult) -> None:
    """What a commit added to `spent`, in the committed-units metrics."""
    if rt.metrics is None:
        return
    m = rt.metrics
    for unit, amount in result.charged.items():
        m.committed.labels(unit).inc(max(amount, 0))
        m.tenant_committed.labels(m.tenant(tenant), unit).inc(max(amount, 0))


def _json(
    body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )
