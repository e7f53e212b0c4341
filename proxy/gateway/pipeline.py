"""A budgeted call, once its caller is identified and its tenant known (handlers.py): admit →
decide → forward → relay → settle.

Admission (admission.py) prepares the call and reserves it. The decision goes out as an event
(CallDenied, or CallDecided: events.py). Forwarding runs in a task of its own, shielded from the
handler: whatever happens to the client, the call is settled, and its answer kept for a retry
with the same idempotency key. It settles through `Flight.settle` (settle.py), whatever ended
it: released when the request never reached the provider or the provider refused it, charged
what the answer shows, and charged at least its reservation when the request reached the
provider and no whole answer came back (a timeout, a reset, the proxy stopping).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from proxy.budget import decision, end_users
from proxy.budget.call import PreparedCall, Sent, prepare
from proxy.budget.directory import TenantConfig
from proxy.budget.endpoints import Endpoint, endpoint_for
from proxy.budget.reserve import reserve_request
from proxy.budget.scopes import Scope
from proxy.core import tasks
from proxy.core.errors import BadGateway, ClientError, UpstreamError
from proxy.gateway import observe, provider_errors, relay, replay, stream_errors, telemetry
from proxy.gateway.admission import Admission
from proxy.gateway.context import Runtime
from proxy.gateway.events import Asked, CallDecided, CallDenied, Events, Routed
from proxy.gateway.settle import Flight, Outcome, Settler
from proxy.gateway.spill import FailOpen
from proxy.gateway.streaming import parsed_answer, relay_stream, usage_of_answer
from proxy.metering.pricing import format_amount
from proxy.metering.shapes import azure
from proxy.store.ledger.base import ReserveRequest, ReserveResult

log = logging.getLogger("cycles.calls")


@dataclass(frozen=True, slots=True)
class Pipeline:
    """What a call passes through, assembled once at startup (app.py)."""

    runtime: Runtime
    admission: Admission
    session: aiohttp.ClientSession
    fail_open: FailOpen
    settler: Settler
    events: Events


PIPELINE = web.AppKey("pipeline", Pipeline)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A call prepared and reserved (`result` None: it goes unbudgeted), with its scope, which
    names the end user its body names (end_users.for_call)."""

    call: PreparedCall
    scope: Scope
    reserve: ReserveRequest
    result: ReserveResult | None
    reserving: tuple[float, float] | None = None
    """The reserve round trip's start and end (time.monotonic)."""


async def run(
    request: web.Request,
    pipe: Pipeline,
    scope: Scope,
    tenant: TenantConfig,
    raw: bytes,
    claim: replay.Claim,
) -> web.StreamResponse:
    """Admit, decide, then forward and settle; `claim` records the answer for client retries."""
    endpoint = endpoint_for(request.path, request.query, request.headers)
    if endpoint is None:  # app.py routes only budgeted paths here: a malformed deployment
        raise azure.not_a_deployment(request.path)
    admitted = await _admit(pipe.admission, tenant, scope, endpoint, raw)
    sent, verdict = _decide(request, pipe.events, admitted.scope, admitted)
    result = admitted.result
    spill = pipe.fail_open.spill
    held = result.reservation if result is not None else spill.stand_in(admitted.reserve)
    flight = Flight(request, sent, verdict, held, pipe.admission.policy, pipe.settler)
    flight.asked_model = admitted.call.model
    # The forward-and-settle task is shielded: whatever happens to this handler, the reservation
    # is settled (and the answer kept for a retry with the same idempotency key).
    rid = admitted.reserve.reservation_id
    task = tasks.spawn(claim.run(_forward(flight, pipe)), name=f"call {rid}")
    return await asyncio.shield(task)


async def _admit(
    admission: Admission, tenant: TenantConfig, scope: Scope, endpoint: Endpoint, raw: bytes
) -> Admitted:
    """Prepare and reserve, with the tenant's settings fresh (admission.fresh)."""

    async def attempt(config: TenantConfig) -> Admitted:
        shadow = config.mode == "shadow"
        call = prepare(admission.policy, config.plan, endpoint, raw, shadow=shadow)
        users = admission.runtime.users
        whose = end_users.for_call(scope, call.body, endpoint.name, users, config.plan)
        reserve = reserve_request(config, whose, call)
        started = time.monotonic()
        result = await admission.reserve(reserve)
        return Admitted(call, whose, reserve, result, (started, time.monotonic()))

    def stale(admitted: Admitted) -> bool:
        return admitted.result is not None and admitted.result.stale

    what = "this call was admitted"
    return await admission.fresh(scope.tenant, tenant, attempt, stale, what=what)


def _decide(
    request: web.Request, events: Events, scope: Scope, admitted: Admitted
) -> tuple[Sent, decision.Decision]:
    """The decision, told to the subscribers: a denial is raised after CallDenied; an admitted
    call is sent as the decision says, after CallDecided."""
    call, result = admitted.call, admitted.result
    asked = Asked(scope, call)
    try:
        verdict = _verdict(result, call, admitted.reserve)
    except ClientError as denial:
        events.emit(CallDenied(request, scope.tenant, denial, result, asked, admitted.reserving))
        raise
    sent = call.send(verdict.variant or call.asked, fitted=verdict.fitted, rewrite=verdict.rewrite)
    held = result.reservation if result is not None else None
    reserved = held.amounts if held is not None else {}
    routed = Routed(asked, sent, verdict)
    events.emit(CallDecided(request, scope.tenant, reserved, routed, result, admitted.reserving))
    return sent, verdict


def _verdict(
    result: ReserveResult | None, call: PreparedCall, reserve: ReserveRequest
) -> decision.Decision:
    if result is None:
        headers = {decision.DECISION: "ALLOW"}
        return decision.Decision("ALLOW", "UNBUDGETED", headers, call.asked)
    return decision.decide(result, call, reserve, shadow=reserve.shadow)


async def _forward(flight: Flight, pipe: Pipeline) -> web.StreamResponse:
    sent = flight.sent
    # A stream's headers come at once; a whole answer's only when its generation is done.
    deadline = relay.Deadline.after(
        sent.timeouts, "first_byte" if sent.stream else "non_stream_answer"
    )
    upstream = await _send_or_settle(flight, pipe, deadline)
    try:
        if sent.stream:
            deadline = relay.Deadline.after(sent.timeouts, "stream_total")
        if upstream.status >= 400:
            # Not billed, whatever becomes of the body: released before it is read, so a stop
            # or a give-up while it comes cannot leave the call held.
            await flight.release()
            body = await _read_or_empty(upstream, deadline)
            anthropic = sent.endpoint.name == "messages"
            return provider_errors.error_response(
                upstream, body, anthropic=anthropic, headers=flight.verdict.headers
            )
        if sent.stream and upstream.content_type == "text/event-stream":
            return await relay_stream(flight, upstream)
        body = await _read_or_charge(flight, upstream, deadline)
        answer = parsed_answer(sent, body)
        await flight.settle(usage_of_answer(sent, answer))
        # The charge above read the original; the client reads its error scrubbed.
        shown = stream_errors.scrubbed_answer(
            sent.endpoint.name, body, answer, upstream=str(upstream.url)
        )
        return _relay_body(upstream, shown, flight.verdict, rewritten=shown is not body)
    finally:
        upstream.release()


async def _send_or_settle(
    flight: Flight, pipe: Pipeline, deadline: relay.Deadline
) -> aiohttp.ClientResponse:
    """The upstream's response headers. A call that ends here is released when its request
    never left (no connection), and otherwise charged: the provider may bill it."""
    call, request = flight.sent, flight.request
    url = relay.upstream_url(call.upstream.base_url, call.path)
    key = pipe.runtime.provider_keys.get(call.upstream.name)
    headers = relay.headers_up(request.headers, key, call.upstream.auth)
    headers[observe.REQUEST_ID] = observe.request_id_of(request)
    # Traced (telemetry.py): the upstream span's traceparent replaces the client's.
    traceparent = request.get(telemetry.UPSTREAM_TRACEPARENT)
    if traceparent is not None:
        headers["traceparent"] = traceparent
    flight.sending()
    try:
        response = await relay.send(
            pipe.session, "POST", url, headers, call.body, call.timeouts, deadline
        )
    except UpstreamError as exc:
        if not exc.delivered:
            await flight.release()
            raise BadGateway(
                f"Upstream {call.upstream.name!r}: {exc}. The call was not sent, and nothing "
                "was charged; retry, or check the upstream's base_url."
            ) from None
        raise await _charged(flight, exc) from None
    except asyncio.CancelledError:
        await _given_up(flight)
        raise
    flight.answered()
    return response


async def _read_or_charge(
    flight: Flight, upstream: aiohttp.ClientResponse, deadline: relay.Deadline
) -> bytes:
    """A 2xx answer's body; when it does not arrive whole, the call is charged and the client
    told so."""
    try:
        return await relay.read_body(upstream, deadline, flight.policy.limits.max_answer_bytes)
    except UpstreamError as exc:
        raise await _charged(flight, exc) from None
    except asyncio.CancelledError:
        await _given_up(flight)
        raise


async def _charged(flight: Flight, exc: UpstreamError) -> BadGateway:
    """Charge a call whose request reached the provider but whose answer never came (what the
    provider may bill: at least the reservation), and the error that tells the client so."""
    sent, reservation = flight.sent, flight.reservation
    charge = await flight.settle(Outcome(complete=False))
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


async def _given_up(flight: Flight) -> None:
    """The proxy stops waiting for this call (it is shutting down): the request may have
    reached the provider, so the call is charged what it holds before the ledger closes."""
    reservation = flight.reservation
    charge = await flight.settle(Outcome(complete=False))
    log.warning(
        "call with reservation=%s given up before the provider answered; charged %s",
        reservation.id if reservation is not None else None,
        charge,
    )


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
