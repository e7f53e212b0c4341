"""One function per endpoint family. Thin: parse → decide → forward → settle → respond."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import aiohttp
from aiohttp import web

from proxy import decision, relay, scopes, tasks
from proxy.call import ENDPOINTS, PreparedCall, prepare
from proxy.context import RUNTIME, Runtime
from proxy.errors import (
    BadGateway,
    Forbidden,
    LedgerUnavailable,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    UpstreamError,
)
from proxy.ledger.base import Reservation, ReserveRequest, ReserveResult
from proxy.settle import charge_for, settle
from proxy.streaming import relay_stream, usage_of_body

log = logging.getLogger("cycles.calls")


async def budgeted(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions, /v1/completions, /v1/embeddings."""
    rt = request.app[RUNTIME]
    policy = rt.policy
    scope = scopes.from_headers(request.headers)
    plan = policy.plan_for(scope.tenant)
    if plan is None:
        raise Forbidden(
            f"Unknown tenant {scope.tenant!r}: it is not in the policy. Check X-Cycles-Tenant, "
            "or ask the operator to add the tenant.",
            type="unknown_tenant",
        )
    shadow = policy.mode_for(scope.tenant) == "shadow"
    raw = await read_limited(request, policy.limits.body_limit(request.path), rt)
    call = prepare(policy, plan, ENDPOINTS[request.path], raw, shadow=shadow)
    reserve = ReserveRequest(
        tenant=scope.tenant,
        reservation_id=uuid.uuid4().hex,
        lines=scopes.budget_lines(plan, scope),
        candidates=[call.amounts],
        shadow=shadow,
    )
    result = await _reserve(rt, reserve)
    if result is None:
        verdict = decision.Decision("ALLOW", "UNBUDGETED", {decision.DECISION: "ALLOW"})
    else:
        verdict = decision.decide(result, call.amounts, shadow=shadow)
    log.info(
        "call tenant=%s scope=%s model=%s decision=%s would_be=%s estimate=%s",
        scope.tenant,
        scope.path(),
        call.model,
        verdict.kind,
        verdict.would_be,
        call.amounts,
    )
    held = result.reservation if result is not None else None
    # The forward-and-settle task is shielded: whatever happens to this handler, the reservation
    # is settled.
    task = tasks.spawn(
        _forward(request, rt, call, verdict, held), name=f"call {reserve.reservation_id}"
    )
    return await asyncio.shield(task)


async def _reserve(rt: Runtime, reserve: ReserveRequest) -> ReserveResult | None:
    """One ledger round trip. None means: ledger down and fail_mode open, forward unbudgeted."""
    try:
        return await rt.ledger.reserve(reserve)
    except LedgerUnavailable as exc:
        if rt.policy.fail_mode == "closed":
            raise ServiceUnavailable(
                "The budget ledger is unreachable, so the call was not forwarded. Retry shortly.",
                retry_after=2,
            ) from None
        log.error(
            "LEDGER UNAVAILABLE (%s): forwarding tenant=%s UNBUDGETED under fail_mode: open, "
            "estimate=%s",
            exc,
            reserve.tenant,
            dict(reserve.candidates[0]),
        )
        return None


async def _forward(
    request: web.Request,
    rt: Runtime,
    call: PreparedCall,
    verdict: decision.Decision,
    reservation: Reservation | None,
) -> web.StreamResponse:
    started = time.monotonic()
    upstream = await _send_or_release(request, rt, call, reservation)
    try:
        if upstream.status >= 400:
            body = await _read_or_empty(upstream, rt)
            await settle(rt.ledger, reservation, None)
            return _relay_body(upstream, body, verdict)
        if call.stream and upstream.content_type == "text/event-stream":
            return await relay_stream(request, rt, call, verdict, reservation, upstream)
        body = await _read_or_empty(upstream, rt)
        outcome = usage_of_body(call, body)
        await settle(rt.ledger, reservation, charge_for(call, outcome))
        return _relay_body(upstream, body, verdict)
    finally:
        upstream.release()
        log.debug(
            "forwarded %s in %.1f ms", call.endpoint.suffix, (time.monotonic() - started) * 1e3
        )


async def _send_or_release(
    request: web.Request, rt: Runtime, call: PreparedCall, reservation: Reservation | None
) -> aiohttp.ClientResponse:
    url = relay.upstream_url(call.upstream.base_url, call.endpoint.suffix)
    headers = relay.headers_up(request.headers, rt.api_keys.get(call.upstream.name))
    try:
        return await relay.send(rt.session, "POST", url, headers, call.body, rt.policy.timeouts)
    except UpstreamError as exc:
        await settle(rt.ledger, reservation, None)
        raise BadGateway(f"Upstream {call.upstream.name!r}: {exc}. Nothing was charged.") from None


async def _read_or_empty(upstream: aiohttp.ClientResponse, rt: Runtime) -> bytes:
    try:
        return await relay.read_body(upstream, rt.policy.timeouts)
    except UpstreamError as exc:
        log.warning("upstream body lost: %s", exc)
        return b""


def _relay_body(
    upstream: aiohttp.ClientResponse, body: bytes, verdict: decision.Decision
) -> web.Response:
    headers = relay.headers_down(upstream.headers.items())
    headers.update(verdict.headers)
    return web.Response(body=body, status=upstream.status, headers=headers)


async def read_limited(request: web.Request, limit: int, rt: Runtime) -> bytes:
    """The request body, refusing more than `limit` bytes and a client too slow to send it."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    data = bytearray()
    try:
        async with asyncio.timeout(rt.policy.timeouts.read_request):
            async for chunk in request.content.iter_any():
                data += chunk
                if len(data) > limit:
                    raise _too_large(limit)
    except TimeoutError:
        raise RequestTimeout(
            f"The request body did not arrive within {rt.policy.timeouts.read_request:g} s."
        ) from None
    return bytes(data)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than this route's limit of {limit} bytes.",
        code="body_too_large",
    )


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
    suffix = "/models" if model is None else f"/models/{model}"
    return await passthrough(request, upstream.name, suffix)


async def passthrough(request: web.Request, upstream_name: str, suffix: str) -> web.StreamResponse:
    """Forward an unbudgeted call as is, through the header allow-lists."""
    rt = request.app[RUNTIME]
    upstream = rt.policy.upstreams[upstream_name]
    url = relay.upstream_url(upstream.base_url, suffix)
    if request.query_string:
        url += "?" + request.query_string
    body = await read_limited(request, rt.policy.limits.body_limit(request.path), rt)
    headers = relay.headers_up(request.headers, rt.api_keys.get(upstream.name))
    try:
        answer = await relay.send(
            rt.session, request.method, url, headers, body or None, rt.policy.timeouts
        )
    except UpstreamError as exc:
        raise BadGateway(f"Upstream {upstream.name!r}: {exc}.") from None
    try:
        data = await relay.read_body(answer, rt.policy.timeouts)
    except UpstreamError as exc:
        raise BadGateway(f"Upstream {upstream.name!r}: {exc}.") from None
    finally:
        answer.release()
    return web.Response(
        body=data, status=answer.status, headers=relay.headers_down(answer.headers.items())
    )


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
