"""One function per endpoint family. Thin: parse → decide → forward → settle → respond."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from proxy.budget import decision
from proxy.budget.call import Endpoint, PreparedCall, Sent, endpoint_for, prepare
from proxy.budget.directory import TenantConfig, unknown_tenant
from proxy.budget.reserve import reserve_request
from proxy.budget.scopes import Scope
from proxy.core import tasks
from proxy.core.errors import (
    AmountOutOfRange,
    BadGateway,
    BadRequest,
    ClientError,
    Forbidden,
    LedgerEpochLost,
    LedgerUnavailable,
    NotFound,
    QuotaExceeded,
    ServiceUnavailable,
    UpstreamError,
)
from proxy.gateway import (
    alerts,
    identity,
    observe,
    provider_errors,
    relay,
    replay,
    standing,
    stream_errors,
)
from proxy.gateway.body import read_limited
from proxy.gateway.context import RUNTIME, Runtime
from proxy.gateway.settle import charge_for, held_amounts, no_answer, settle
from proxy.gateway.streaming import relay_stream, usage_of_body
from proxy.metering.pricing import format_amount
from proxy.metering.shapes import azure
from proxy.store.ledger.base import Reservation, ReserveRequest, ReserveResult

log = logging.getLogger("cycles.calls")


async def budgeted(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses, /v1/messages."""
    rt = request.app[RUNTIME]
    scope = await identity.identify(request, rt)
    tenant = await _tenant(rt, scope.tenant)
    raw = await read_limited(request, rt.policy.limits.body_limit(request.path), rt)
    claim = await replay.begin(
        rt.replays, request, scope, raw, fail_open=rt.policy.fail_mode == "open"
    )
    if isinstance(claim, web.Response):
        # A replay reserves nothing, so no reserve script sees the tenant's status.
        await standing.check_active(rt, scope.tenant)
        return claim
    async with claim:
        return await _budgeted(request, rt, scope, tenant, raw, claim)


async def _budgeted(
    request: web.Request,
    rt: Runtime,
    scope: Scope,
    tenant: TenantConfig,
    raw: bytes,
    claim: replay.Claim,
) -> web.StreamResponse:
    """Admit, decide, then forward and settle; `claim` records the answer for client retries."""
    endpoint = endpoint_for(request.path, request.query, request.headers)
    if endpoint is None:  # app.py routes only budgeted paths here: a malformed deployment
        raise azure.not_a_deployment(request.path)
    call, reserve, result = await _admit(rt, tenant, scope, endpoint, raw)
    shadow = reserve.shadow
    try:
        verdict = _verdict(result, call, reserve, shadow=shadow)
    except ClientError as denial:
        observe.denied(scope, call, denial)
        if result is not None:
            alerts.first_deny(rt, result, scope.tenant)
        raise
    sent = call.send(verdict.variant or call.asked, fitted=verdict.fitted, rewrite=verdict.rewrite)
    observe.decided(scope, call, sent, verdict, result)
    held = result.reservation if result is not None else rt.fail_open.spill.stand_in(reserve)
    # The forward-and-settle task is shielded: whatever happens to this handler, the reservation
    # is settled (and the answer kept for a retry with the same idempotency key).
    task = tasks.spawn(
        claim.run(_forward(request, rt, sent, verdict, held)), name=f"call {reserve.reservation_id}"
    )
    return await asyncio.shield(task)


def _verdict(
    result: ReserveResult | None, call: PreparedCall, reserve: ReserveRequest, *, shadow: bool
) -> decision.Decision:
    if result is None:
        headers = {decision.DECISION: "ALLOW"}
        return decision.Decision("ALLOW", "UNBUDGETED", headers, call.asked)
    return decision.decide(result, call, reserve, shadow=shadow)


async def _tenant(rt: Runtime, tenant: str) -> TenantConfig:
    """The tenant's plan and settings; from the policy alone when the store is down and
    fail_mode is open."""
    try:
        config = await rt.directory.get(tenant)
    except LedgerEpochLost:
        if rt.policy.on_store_lost != "shadow":
            raise
        config = rt.directory.fallback(tenant)
    except LedgerUnavailable:
        if rt.policy.fail_mode == "closed":
            raise ServiceUnavailable(
                "The budget ledger is unreachable, so the call was not forwarded. Retry shortly.",
                retry_after=2,
            ) from None
        config = rt.directory.fallback(tenant)
    if config is None:
        raise unknown_tenant(tenant)
    return config


async def _admit(
    rt: Runtime, tenant: TenantConfig, scope: Scope, endpoint: Endpoint, raw: bytes
) -> tuple[PreparedCall, ReserveRequest, ReserveResult | None]:
    """Prepare and reserve. When the tenant's record changed since it was cached (a plan
    change, an override), the store refuses the request as stale: reload once and redo it."""
    for attempt in range(2):
        shadow = tenant.mode == "shadow"
        call = prepare(rt.policy, tenant.plan, endpoint, raw, shadow=shadow)
        reserve = reserve_request(tenant, scope, call)
        result = await _reserve(rt, reserve)
        if result is None or not result.stale or attempt:
            break
        rt.forget_tenant(scope.tenant)
        tenant = await _tenant(rt, scope.tenant)
    if result is not None and result.stale:
        raise ServiceUnavailable(
            "The tenant's settings changed twice while this call was admitted; retry.",
            retry_after=1,
            code="tenant_changing",
        )
    return call, reserve, result


async def _reserve(rt: Runtime, reserve: ReserveRequest) -> ReserveResult | None:
    """One ledger round trip. None means: ledger down and fail_mode open, forward unbudgeted."""
    try:
        return await observe.timed("reserve", rt.ledger.reserve(reserve))
    except AmountOutOfRange as exc:
        raise BadRequest(
            f"This call is too large to budget ({exc}); lower n or the completion limit.",
            code="call_too_large",
        ) from None
    except LedgerEpochLost as exc:
        # on_store_lost: shadow forwards unbudgeted as fail_mode open does; closed: 503 (app.py).
        if rt.policy.on_store_lost != "shadow":
            raise
        _unbudgeted(rt, reserve, exc)
        return None
    except LedgerUnavailable as exc:
        if rt.policy.fail_mode == "closed":
            if exc.maybe_ran:
                rt.fail_open.spill.add_abandoned(reserve)  # the reserve may have run all the same
            raise ServiceUnavailable(
                "The budget ledger is unreachable, so the call was not forwarded. Retry shortly.",
                retry_after=2,
            ) from None
        _unbudgeted(rt, reserve, exc)
        return None


def _unbudgeted(rt: Runtime, reserve: ReserveRequest, exc: Exception) -> None:
    """Forward unbudgeted (the ledger is down or lost), unless the tenant's local bucket is
    empty: then 429 ledger_down_rate (and the reserve, which may have run, is released)."""
    wait = rt.fail_open.buckets.take(reserve.tenant, reserve.quotas.requests_per_minute)
    if wait:
        if isinstance(exc, LedgerUnavailable) and exc.maybe_ran:
            rt.fail_open.spill.add_abandoned(reserve)
        raise QuotaExceeded(
            "The budget ledger is unreachable; this tenant's calls are rate limited locally "
            "until it is back. Retry shortly.",
            quota="ledger_down_rate",
            headers={"Retry-After": str(math.ceil(wait))},
        ) from None
    log.error(
        "LEDGER UNAVAILABLE (%s): forwarding tenant=%s UNBUDGETED under %s, estimate=%s",
        exc,
        reserve.tenant,
        "on_store_lost: shadow" if isinstance(exc, LedgerEpochLost) else "fail_mode: open",
        dict(reserve.candidates[0].amounts),
    )


async def _forward(
    request: web.Request,
    rt: Runtime,
    sent: Sent,
    verdict: decision.Decision,
    reservation: Reservation | None,
) -> web.StreamResponse:
    # A stream's headers come at once; a whole answer's only when its generation is done.
    deadline = relay.Deadline.after(
        sent.timeouts, "first_byte" if sent.stream else "non_stream_answer"
    )
    upstream = await _send_or_settle(request, rt, sent, reservation, deadline)
    try:
        if sent.stream:
            deadline = relay.Deadline.after(sent.timeouts, "stream_total")
        if upstream.status >= 400:
            body = await _read_or_empty(upstream, deadline)
            await settle(rt.ledger, reservation, None, rt.fail_open.spill)
            anthropic = sent.endpoint.name == "messages"
            return provider_errors.error_response(
                upstream, body, anthropic=anthropic, headers=verdict.headers
            )
        if sent.stream and upstream.content_type == "text/event-stream":
            return await relay_stream(request, rt, sent, verdict, reservation, upstream)
        body = await _read_or_charge(rt, sent, reservation, upstream, deadline)
        reserved = held_amounts(reservation)
        charge = charge_for(sent, reserved, usage_of_body(sent, body))
        await settle(rt.ledger, reservation, charge, rt.fail_open.spill, alerts.notifier(rt))
        # The charge above read the original; the client reads its error scrubbed.
        shown = stream_errors.scrubbed_answer(sent.endpoint.name, body, upstream=str(upstream.url))
        return _relay_body(upstream, shown, verdict, rewritten=shown is not body)
    finally:
        upstream.release()


async def _send_or_settle(
    request: web.Request,
    rt: Runtime,
    call: Sent,
    reservation: Reservation | None,
    deadline: relay.Deadline,
) -> aiohttp.ClientResponse:
    """The upstream's response headers. A call that ends here is released when its request
    never left (no connection), and otherwise charged: the provider may bill it."""
    url = relay.upstream_url(call.upstream.base_url, call.path)
    headers = relay.headers_up(
        request.headers, rt.api_keys.get(call.upstream.name), call.upstream.auth
    )
    headers[observe.REQUEST_ID] = observe.request_id_of(request)
    observe.upstream_sending()
    try:
        response = await relay.send(
            rt.session, "POST", url, headers, call.body, call.timeouts, deadline
        )
    except UpstreamError as exc:
        if not exc.delivered:
            await settle(rt.ledger, reservation, None, rt.fail_open.spill)
            raise BadGateway(
                f"Upstream {call.upstream.name!r}: {exc}. The call was not sent, and nothing "
                "was charged; retry, or check the upstream's base_url."
            ) from None
        raise await _charged(rt, call, reservation, exc) from None
    except asyncio.CancelledError:
        await _given_up(rt, call, reservation)
        raise
    observe.upstream_answered()
    return response


async def _read_or_charge(
    rt: Runtime,
    sent: Sent,
    reservation: Reservation | None,
    upstream: aiohttp.ClientResponse,
    deadline: relay.Deadline,
) -> bytes:
    """A 2xx answer's body; when it does not arrive whole, the call is charged and the client
    told so."""
    try:
        return await relay.read_body(upstream, deadline, rt.policy.limits.max_answer_bytes)
    except UpstreamError as exc:
        raise await _charged(rt, sent, reservation, exc) from None
    except asyncio.CancelledError:
        await _given_up(rt, sent, reservation)
        raise


async def _charged(
    rt: Runtime, sent: Sent, reservation: Reservation | None, exc: UpstreamError
) -> BadGateway:
    """Charge a call whose request reached the provider but whose answer never came (what the
    provider may bill: at least the reservation), and the error that tells the client so."""
    charge = no_answer(sent, reservation)
    await settle(rt.ledger, reservation, charge, rt.fail_open.spill, alerts.notifier(rt))
    log.warning(
        "upstream %s: %s; the request had been sent, so reservation=%s is charged %s",
        sent.upstream.name,
        exc,
        reservation.id if reservation is not None else None,
        charge,
    )
    amount = ", ".join(format_amount(value, unit) for unit, value in sorted(charge.items()))
    charged = (
        f"so this call was charged its reservation ({amount})"
        if reservation is not None
        else "but this call held no reservation (shadow mode), so nothing was recorded"
    )
    fix = (
        f" If this model takes longer, raise timeouts.{exc.timeout} (or its route's)."
        if exc.timeout
        else ""
    )
    return BadGateway(
        f"Upstream {sent.upstream.name!r}: {exc}. The request had reached the provider, which may "
        f"bill it, {charged}.{fix}",
        status=504 if exc.timeout else 502,
        code="upstream_timeout" if exc.timeout else "upstream_unavailable",
    )


async def _given_up(rt: Runtime, sent: Sent, reservation: Reservation | None) -> None:
    """The proxy stops waiting for this call (it is shutting down): the request may have
    reached the provider, so the call is charged what it holds before the ledger closes."""
    charge = no_answer(sent, reservation)
    log.warning(
        "call with reservation=%s given up before the provider answered; charged %s",
        reservation.id if reservation is not None else None,
        charge,
    )
    await settle(rt.ledger, reservation, charge, rt.fail_open.spill, alerts.notifier(rt))


async def _read_or_empty(upstream: aiohttp.ClientResponse, deadline: relay.Deadline) -> bytes:
    """An error answer's body, at most provider_errors.MAX_ERROR_BODY bytes (b"" if more)."""
    try:
        return await relay.read_body(upstream, deadline, provider_errors.MAX_ERROR_BODY)
    except UpstreamError as exc:
        log.warning("upstream body lost: %s", exc)
        return b""


def _relay_body(
    upstream: aiohttp.ClientResponse,
    body: bytes,
    verdict: decision.Decision,
    *,
    rewritten: bool,
) -> web.Response:
    """The whole answer `body` with the upstream's status and allow-listed headers; typed JSON
    when the proxy has `rewritten` it, whatever the provider's body was."""
    headers = relay.headers_down(upstream.headers.items())
    headers.update(verdict.headers)
    if rewritten:
        headers["Content-Type"] = "application/json"
    return web.Response(body=body, status=upstream.status, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving."""
    return web.json_response({"status": "ok"})


async def models(request: web.Request) -> web.StreamResponse:
    """GET /v1/models and /v1/models/{model}: forwarded, not budgeted."""
    rt = request.app[RUNTIME]
    model = request.match_info.get("model")
    upstream = rt.policy.upstream_for(model or "*") or rt.default_upstream()
    if upstream is None:
        raise NotFound("No upstream is configured.")
    suffix = "/models" if model is None else f"/models/{relay.path_segment(model)}"
    return await passthrough(request, upstream.name, suffix)


async def passthrough(request: web.Request, upstream_name: str, suffix: str) -> web.StreamResponse:
    """Forward an unbudgeted call as is, through the header allow-lists, for an active tenant."""
    rt = request.app[RUNTIME]
    await standing.check_active(rt, (await identity.identify(request, rt)).tenant)
    upstream = rt.policy.upstreams[upstream_name]
    url = relay.upstream_url(upstream.base_url, suffix)
    if request.rel_url.raw_query_string:
        url += "?" + request.rel_url.raw_query_string
    body = await read_limited(request, rt.policy.limits.body_limit(request.path), rt)
    headers = relay.headers_up(request.headers, rt.api_keys.get(upstream.name), upstream.auth)
    headers[observe.REQUEST_ID] = observe.request_id_of(request)
    timeouts = upstream.timeouts or rt.policy.timeouts
    first_byte = relay.Deadline.after(timeouts, "first_byte")
    try:
        answer = await relay.send(
            rt.session, request.method, url, headers, body or None, timeouts, first_byte
        )
    except UpstreamError as exc:
        raise BadGateway(f"Upstream {upstream.name!r}: {exc}.") from None
    try:
        limit = rt.policy.limits.max_answer_bytes
        data = await relay.read_body(answer, relay.Deadline.after(timeouts, "stream_total"), limit)
    except UpstreamError as exc:
        raise BadGateway(f"Upstream {upstream.name!r}: {exc}.") from None
    finally:
        answer.release()
    if answer.status >= 400:
        return provider_errors.error_response(answer, data, anthropic=False)
    return web.Response(
        body=data, status=answer.status, headers=relay.headers_down(answer.headers.items())
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def quitter(on_quit: Callable[[], None]) -> Handler:
    """POST /quitquitquit: the app next to this sidecar has exited, so stop now (in-flight
    calls still finish within the drain timeout). Only from the pod itself: a loopback peer."""

    async def quit_(request: web.Request) -> web.StreamResponse:
        if not _loopback_peer(request):
            raise Forbidden("/quitquitquit is accepted only from a loopback address.")
        on_quit()
        return web.json_response({"status": "stopping"}, status=202)

    return quit_


def _loopback_peer(request: web.Request) -> bool:
    try:
        return request.remote is not None and ipaddress.ip_address(request.remote).is_loopback
    except ValueError:
        return False


async def fallback(request: web.Request) -> web.StreamResponse:
    """Every other path: 404 unless an upstream lists it under `passthrough:`."""
    rt = request.app[RUNTIME]
    path = request.path
    if path.startswith("/v1/"):
        suffix = path[len("/v1") :]
        for upstream in rt.policy.upstreams.values():
            if suffix in upstream.passthrough:
                return await passthrough(request, upstream.name, suffix)
    raise NotFound(
        f"No such route: {request.method} {path}. cycles-proxy forwards only budgeted endpoints "
        "and paths the policy lists under `passthrough:`."
    )
