"""What the proxy tells operators: request ids, one JSON log line per budgeted call, metrics.

A budgeted call gets a `CallRecord` in a context variable when it arrives (the `observe`
middleware). The handler fills in the decision, `settle()` the charge; the record is written as
one JSON line on the `cycles.calls` logger and counted in the metrics when both the response is
done and the call is settled (a call whose client left is logged when its settlement runs,
with status 499).

Request ids: a client's `X-Request-Id` is kept if it is sane (at most 128 of
[A-Za-z0-9_.-]); otherwise one is generated. It is sent upstream and returned on every response,
errors included.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeVar

import orjson
from aiohttp import web

from proxy.budget.call import PreparedCall, Sent, endpoint_for
from proxy.budget.decision import Decision
from proxy.budget.scopes import Scope
from proxy.core.errors import ClientError, LedgerError, QuotaExceeded
from proxy.core.ids import new_id
from proxy.gateway.context import RUNTIME
from proxy.gateway.metrics import CONTENT_TYPE, Metrics
from proxy.store.ledger.base import ReserveResult

log = logging.getLogger("cycles.calls")

REQUEST_ID = "X-Request-Id"
METRICS = web.AppKey("metrics", Metrics)
CLIENT_CLOSED = 499
"""Status logged for a call whose client left before its answer (nginx's convention)."""

_SANE_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_ID_KEY = web.RequestKey("request_id", str)

T = TypeVar("T")


def request_id(headers: Mapping[str, str]) -> str:
    """The client's X-Request-Id if it is sane, else a new one."""
    given = headers.get(REQUEST_ID, "")
    return given if _SANE_ID.fullmatch(given) else new_id()


@dataclass(slots=True)
class CallRecord:
    """One budgeted call, filled in as it goes."""

    metrics: Metrics
    request_id: str
    endpoint: str
    started: float = field(default_factory=time.monotonic)
    tenant: str | None = None
    scope: str | None = None
    model: str | None = None
    sent: str | None = None
    decision: str = "NONE"
    """ALLOW, ALLOW_WITH_CAPS, DENY, or NONE when no decision was made (refused before one:
    401, 403, 413, 503; or a client retry answered from the idempotency record)."""
    would_be: str | None = None
    rule: str | None = None
    estimate: dict[str, int] | None = None
    actual: dict[str, int] | None = None
    status: int | None = None
    upstream_started: float | None = None
    forwarded: bool = False
    settled: bool = False
    responded: bool = False
    written: bool = False

    def line(self) -> dict[str, object]:
        return {
            "event": "call",
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "tenant": self.tenant,
            "scope": self.scope,
            "model": self.model,
            "sent": self.sent,
            "decision": self.decision,
            "would_be": self.would_be,
            "rule": self.rule,
            "estimate": self.estimate,
            "actual": self.actual,
            "status": self.status,
            "latency_ms": round((time.monotonic() - self.started) * 1000, 1),
        }

    def finish(self) -> None:
        """Log and count the call, once."""
        if self.written:
            return
        self.written = True
        m = self.metrics
        m.in_flight.dec()
        status = str(self.status if self.status is not None else CLIENT_CLOSED)
        m.requests.labels(self.decision, self.endpoint, m.model(self.model or ""), status).inc()
        if self.tenant is not None:
            m.tenant_requests.labels(m.tenant(self.tenant), self.decision).inc()
        log.info("%s", orjson.dumps(self.line()).decode())


CURRENT: ContextVar[CallRecord | None] = ContextVar("cycles_call", default=None)


@web.middleware
async def middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Request id in and out; a CallRecord around every budgeted call."""
    rid = request[_ID_KEY] = request_id(request.headers)
    endpoint = endpoint_for(request.path, request.query)
    if endpoint is None or request.method != "POST":
        return await handler(request)
    record = CallRecord(request.app[METRICS], rid, endpoint.name)
    record.metrics.in_flight.inc()
    token = CURRENT.set(record)
    try:
        response = await handler(request)
        record.status = response.status
        return response
    except asyncio.CancelledError:
        record.status = CLIENT_CLOSED
        raise
    except web.HTTPException as exc:
        record.status = exc.status
        raise
    finally:
        CURRENT.reset(token)
        record.responded = True
        # A call whose client left still settles in its shielded task; that writes the line.
        if record.settled or not record.forwarded or record.status != CLIENT_CLOSED:
            record.finish()


def request_id_of(request: web.Request) -> str:
    """The id the middleware gave the request: the client's X-Request-Id if sane, else new."""
    return request.get(_ID_KEY) or request_id(request.headers)


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Every response, errors and streams included, carries the request id."""
    rid = request.get(_ID_KEY)
    if rid is not None:
        response.headers[REQUEST_ID] = rid


def denied(scope: Scope, call: PreparedCall, denial: ClientError) -> None:
    """The handler's decision was DENY (budget, quota, tenant status)."""
    record = CURRENT.get()
    if record is None:
        return
    _describe(record, scope, call)
    record.decision = "DENY"
    if isinstance(denial, QuotaExceeded) and denial.code is not None:
        record.would_be = f"DENY quota {denial.code}"
        record.metrics.quota_denials.labels(denial.code).inc()
    else:
        record.would_be = f"DENY {denial.type}"


def decided(
    scope: Scope, call: PreparedCall, sent: Sent, verdict: Decision, result: ReserveResult | None
) -> None:
    """The call is about to go upstream as `sent`."""
    record = CURRENT.get()
    if record is None:
        return
    _describe(record, scope, call)
    record.sent = sent.model
    record.decision = verdict.kind
    record.would_be = verdict.would_be
    record.rule = verdict.rule
    record.forwarded = True
    m = record.metrics
    if verdict.rule is not None and verdict.rewrite:
        m.degradations.labels(verdict.rule).inc()
    if result is not None and result.reservation is not None:
        for unit, amount in result.reservation.amounts.items():
            m.reserved.labels(unit).inc(amount)


def _describe(record: CallRecord, scope: Scope, call: PreparedCall) -> None:
    record.tenant = scope.tenant
    record.scope = scope.path()
    record.model = call.model
    record.estimate = dict(call.asked.amounts)


def settled(tenant: str | None, charge: Mapping[str, int] | None) -> None:
    """The call's charge is known (None: released, nothing charged). `tenant` is the
    reservation's, None when nothing was reserved."""
    record = CURRENT.get()
    if record is None:
        return
    record.actual = dict(charge) if charge is not None else {}
    record.settled = True
    m = record.metrics
    if tenant is not None:  # None: the call went unbudgeted (fail_mode: open), nothing recorded
        for unit, amount in (charge or {}).items():
            m.committed.labels(unit).inc(max(amount, 0))
            m.tenant_committed.labels(m.tenant(tenant), unit).inc(max(amount, 0))
    if record.upstream_started is not None:
        m.upstream_latency.labels(record.endpoint).observe(
            time.monotonic() - record.upstream_started
        )
    if record.responded:
        record.finish()


async def timed(op: str, call: Awaitable[T]) -> T:
    """Await a ledger operation, timing it and counting its failure, in the current call's
    metrics (no-op outside a budgeted call)."""
    record = CURRENT.get()
    return await ledger_op(record.metrics if record else None, op, call)


async def ledger_op(metrics: Metrics | None, op: str, call: Awaitable[T]) -> T:
    """Await a ledger operation, timing it into `metrics` and counting a LedgerError."""
    if metrics is None:
        return await call
    started = time.monotonic()
    try:
        return await call
    except LedgerError:
        metrics.ledger_errors.labels(op).inc()
        raise
    finally:
        metrics.ledger_latency.labels(op).observe(time.monotonic() - started)


def upstream_sending() -> None:
    """A budgeted call is about to be sent upstream (the start of its upstream latency)."""
    record = CURRENT.get()
    if record is not None:
        record.upstream_started = time.monotonic()


def upstream_answered() -> None:
    """The upstream's response headers arrived: time to first byte. (Timed here rather than
    with an aiohttp TraceConfig, whose hooks cost every request several awaits.)"""
    record = CURRENT.get()
    if record is not None and record.upstream_started is not None:
        elapsed = time.monotonic() - record.upstream_started
        record.metrics.upstream_ttfb.labels(record.endpoint).observe(elapsed)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: the process is up and has a policy. Ledger health is deliberately not part
    of readiness (a not-ready sidecar would take its application pod out of service); it shows
    in the ledger metrics and as a per-request 503."""
    if RUNTIME not in request.app:
        return web.json_response({"status": "starting"}, status=503)
    policy = request.app[RUNTIME].policy
    return web.json_response({"status": "ready", "tenants_in_policy": len(policy.tenants)})
