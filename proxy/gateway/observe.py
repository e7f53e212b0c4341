"""What the proxy tells operators: request ids, and one JSON log line per budgeted call.

A budgeted call gets a `CallRecord` on its request when it arrives (the `observe` middleware).
The pipeline's events fill it in (`subscribe`, at startup: the decision from CallDecided or
CallDenied, the charge from CallSettled); the record is written as one JSON line on the
`cycles.calls` logger and counted in the metrics when both the response is done and the call
is settled (a call whose client left is logged when its settlement runs, with status 499).

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
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from proxy.budget.endpoints import endpoint_for
from proxy.core.errors import QuotaExceeded
from proxy.core.ids import new_id
from proxy.gateway.context import RUNTIME
from proxy.gateway.events import Asked, CallDecided, CallDenied, CallSettled, Events, ToolAsked
from proxy.gateway.logs import JSON_OBJECT
from proxy.gateway.metrics import METRICS, OTHER, Metrics

log = logging.getLogger("cycles.calls")

REQUEST_ID = "X-Request-Id"
CLIENT_CLOSED = 499
"""Status logged for a call whose client left before its answer (nginx's convention)."""

_SANE_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_ID_KEY = web.RequestKey("request_id", str)


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
    tool: ToolAsked | None = None
    """An MCP tool call's server, tool and price key."""
    outcome: str | None = None
    """How an MCP tool call ended: refused before the ledger (hidden, unpriced, unbudgeted),
    denied, or its ending once relayed (mcp/outcome.py)."""
    estimate: dict[str, int] | None = None
    actual: dict[str, int] | None = None
    status: int | None = None
    forwarded: bool = False
    settled: bool = False
    responded: bool = False
    written: bool = False

    def line(self) -> dict[str, object]:
        line = self._common()
        if self.tool is not None:
            line["server"] = self.tool.server
            line["tool"] = self.tool.name
            line["price"] = self.tool.price
            line["outcome"] = self.outcome
        return line

    def _common(self) -> dict[str, object]:
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
        model = m.model(self.model or "") if self.tool is None else tool_label(self.tool)
        m.requests.labels(self.decision, self.endpoint, model, status).inc()
        if self.tenant is not None:
            m.tenant_requests.labels(m.tenant(self.tenant), self.decision).inc()
        log.info(orjson.dumps(self.line()).decode(), extra=_SPLICED)


def tool_label(tool: ToolAsked) -> str:
    """A tool call's `model` label: the `actions:` key that prices it (bounded by the policy),
    `other` when none does (the tool name is the client's to choose)."""
    return tool.price or OTHER


_SPLICED = {JSON_OBJECT: True}
"""The call line is one orjson dump of a dict: the JSON log format splices it in unparsed."""
_RECORD = web.RequestKey("call_record", CallRecord)


@web.middleware
async def middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Request id in and out; a CallRecord around every budgeted call."""
    request[_ID_KEY] = request_id(request.headers)
    endpoint = endpoint_for(request.path, request.query)
    if endpoint is None or request.method != "POST":
        return await handler(request)
    return await observed(request, endpoint.name, handler(request))


async def observed(
    request: web.Request, endpoint: str, handling: Awaitable[web.StreamResponse]
) -> web.StreamResponse:
    """`handling` as one budgeted call of `endpoint`: its CallRecord on the request (which the
    events fill in), in flight until it is logged. The middleware's for LLM calls; the MCP
    front's for each tools/call (endpoint `mcp`)."""
    record = request[_RECORD] = CallRecord(request.app[METRICS], request_id_of(request), endpoint)
    record.metrics.in_flight.inc()
    try:
        response = await handling
        record.status = response.status
        return response
    except asyncio.CancelledError:
        record.status = CLIENT_CLOSED
        raise
    except web.HTTPException as exc:
        record.status = exc.status
        raise
    finally:
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


def subscribe(events: Events) -> None:
    """Fill in each budgeted call's record from the pipeline's events."""
    events.subscribe(CallDecided, _decided)
    events.subscribe(CallDenied, _denied)
    events.subscribe(CallSettled, _settled)


def _denied(event: CallDenied) -> None:
    """The call's decision was DENY (budget, quota, tenant status)."""
    record = event.request.get(_RECORD)
    if record is None:
        return
    if event.tool is not None:
        _describe_tool(record, event.tool)
        why = event.denial.type.removeprefix("tool_")
        record.outcome = "denied" if event.result is not None else why
    elif event.asked is not None:
        _describe(record, event.asked)
    else:
        return
    record.decision = "DENY"
    denial = event.denial
    if isinstance(denial, QuotaExceeded) and denial.code is not None:
        record.would_be = f"DENY quota {denial.code}"
    else:
        record.would_be = f"DENY {denial.type}"


def _decided(event: CallDecided) -> None:
    """The call is about to go upstream."""
    record = event.request.get(_RECORD)
    if record is None:
        return
    if event.tool is not None:
        _describe_tool(record, event.tool)
        record.decision = "ALLOW"
        record.forwarded = True
        return
    if event.routed is None:
        return
    routed = event.routed
    _describe(record, routed.asked)
    record.sent = routed.sent.model
    record.decision = routed.verdict.kind
    record.would_be = routed.verdict.would_be
    record.rule = routed.verdict.rule
    record.forwarded = True


def _describe(record: CallRecord, asked: Asked) -> None:
    record.tenant = asked.scope.tenant
    record.scope = asked.scope.path()
    record.model = asked.call.model
    record.estimate = dict(asked.call.asked.amounts)


def _describe_tool(record: CallRecord, tool: ToolAsked) -> None:
    record.tool = tool
    record.tenant = tool.scope.tenant
    record.scope = tool.scope.path()
    record.model = tool.action
    record.estimate = dict(tool.amounts)


def _settled(event: CallSettled) -> None:
    """The call's charge is known (None: released, nothing charged)."""
    record = event.request.get(_RECORD)
    if record is None:
        return
    record.actual = dict(event.charge) if event.charge is not None else {}
    if event.ending is not None:
        record.outcome = event.ending
    record.settled = True
    if record.responded:
        record.finish()


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: the process is up and has a policy. Ledger health is deliberately not part
    of readiness (a not-ready sidecar would take its application pod out of service); it shows
    in the ledger metrics and as a per-request 503."""
    if RUNTIME not in request.app:
        return web.json_response({"status": "starting"}, status=503)
    policy = request.app[RUNTIME].policy
    return web.json_response({"status": "ready", "tenants_in_policy": len(policy.tenants)})
