"""OpenTelemetry traces and metrics of budgeted calls, exported over OTLP/HTTP (imported only
when telemetry.py turns it on).

Every budgeted call gets a span, kind CLIENT, named and attributed per the GenAI semantic
conventions (genai.py), plus `cycles.*` attributes: the tenant, the decision and its rule, the
reservation, the charge, what the tightest budget line has left. Its parent is the client's
W3C `traceparent` (and `tracestate`); without one it starts a trace. The middleware starts it
when the request arrives; it ends once the response is done and, for a call that went
upstream, the call has settled (a call whose client left ends with its settlement).

Its children are made after the fact, from the times the pipeline already takes (events.py):
`cycles.reserve` (the ledger's reserve), `cycles.upstream` (from sending to the answer read)
and `cycles.settle` (the commit or release). A denied call's span has an error status and
`cycles.decision=DENY`. The upstream is sent a `traceparent` naming the upstream span, chosen
before the request leaves (ChosenIds), so the provider's spans hang under it.

The GenAI client metrics (token usage, operation duration) are recorded as each call ends.
Each process exports its own, with a `service.instance.id` of its own (`--workers N`).

The client's `traceparent` gives the trace its id, not its sampling: unless the operator sets
OTEL_TRACES_SAMPLER, every call is sampled whatever the client's sampled flag says (a tenant
must not hide its calls from the operator, nor override the operator's ratio).

Stopping exports what is left, but waits for it at most STOP_SECONDS: a collector that hangs or
answers one byte a second must not keep a stopping proxy past its grace period (the SDK's own
waits add up to a minute). Each export request times out after EXPORT_SECONDS unless
OTEL_EXPORTER_OTLP_TIMEOUT says otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from proxy.budget.endpoints import endpoint_for
from proxy.gateway import genai, observe, telemetry
from proxy.gateway.events import EVENTS, CallDecided, CallDenied, CallSettled, Events
from proxy.gateway.spans import Clock, add_decision, add_denial, add_settlement

SCOPE = "cycles-proxy"
STOP_SECONDS = 5.0
"""The longest stopping waits for the last spans and metrics to be exported."""
EXPORT_SECONDS = 2.0
"""Each export request's timeout, unless OTEL_EXPORTER_OTLP_TIMEOUT is set."""
TIMEOUT_ENV = "OTEL_EXPORTER_OTLP_TIMEOUT"
SAMPLER_ENV = "OTEL_TRACES_SAMPLER"
log = logging.getLogger("cycles.tracing")
_PROPAGATOR = TraceContextTextMapPropagator()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ChosenIds(RandomIdGenerator):
    """Random ids, except the next span id when one was chosen beforehand: the upstream span's,
    sent in the upstream's `traceparent` before the span itself is made."""

    def __init__(self) -> None:
        self.chosen: int | None = None

    def generate_span_id(self) -> int:
        chosen, self.chosen = self.chosen, None
        return chosen if chosen is not None else super().generate_span_id()


@dataclass(slots=True)
class CallTrace:
    """One budgeted call's span, until it ends."""

    span: trace.Span
    upstream_id: int
    started: float
    """time.monotonic() at arrival."""
    attributes: dict[str, str] = field(default_factory=dict)
    """The GenAI attributes its metrics carry."""
    forwarded: bool = False
    settled: bool = False
    responded: bool = False


_CALL = web.RequestKey("call_trace", CallTrace)


class Tracing:
    """The providers, and the spans and metrics of the calls they export."""

    def __init__(
        self, tracer: TracerProvider | None, meter: MeterProvider | None, ids: ChosenIds
    ) -> None:
        self.providers = tracer, meter
        self.ids = ids
        self.tracer = (tracer or trace.NoOpTracerProvider()).get_tracer(SCOPE)
        self.instruments = genai.Instruments((meter or NoOpMeterProvider()).get_meter(SCOPE))

    def subscribe(self, events: Events) -> None:
        events.subscribe(CallDecided, self._decided)
        events.subscribe(CallDenied, self._denied)
        events.subscribe(CallSettled, self._settled)

    def begin(self, request: web.Request, endpoint: str) -> CallTrace:
        """The call's span, started now under the client's trace context; its upstream gets
        the upstream span's."""
        parent = _PROPAGATOR.extract(request.headers)
        operation = {genai.OPERATION: genai.operation(endpoint)}
        said = operation | {"cycles.request_id": observe.request_id_of(request)}
        span = self.tracer.start_span(
            genai.span_name(endpoint, None), parent, SpanKind.CLIENT, said
        )
        call = request[_CALL] = CallTrace(span, self.ids.generate_span_id(), time.monotonic())
        call.attributes.update(operation)
        context = span.get_span_context()
        if context.is_valid:
            request[telemetry.UPSTREAM_TRACEPARENT] = (
                f"00-{context.trace_id:032x}-{call.upstream_id:016x}-{context.trace_flags:02x}"
            )
        return call

    def responded(self, call: CallTrace, status: int) -> None:
        call.responded = True
        call.span.set_attribute("http.response.status_code", status)
        # A client span's error, as HTTP's conventions have it; a denial has said why already.
        if status >= 400 and genai.ERROR_TYPE not in call.attributes:
            call.span.set_status(Status(StatusCode.ERROR))
            call.attributes[genai.ERROR_TYPE] = str(status)
        if call.settled or not call.forwarded:
            self._end(call)

    def _end(self, call: CallTrace) -> None:
        call.span.end()
        seconds = time.monotonic() - call.started
        self.instruments.record_duration(call.attributes, seconds)

    def _decided(self, event: CallDecided) -> None:
        call = event.request.get(_CALL)
        if call is None or event.routed is None:
            return
        call.forwarded = True
        add_decision(self.tracer, call.span, call.attributes, event, Clock())

    def _denied(self, event: CallDenied) -> None:
        call = event.request.get(_CALL)
        if call is None or event.asked is None:
            return
        add_denial(self.tracer, call.span, call.attributes, event, Clock())

    def _settled(self, event: CallSettled) -> None:
        call = event.request.get(_CALL)
        if call is None or not call.forwarded or call.settled:
            return
        call.settled = True
        self.ids.chosen = call.upstream_id
        try:
            add_settlement(self.tracer, call.span, event, Clock())
        finally:
            self.ids.chosen = None
        usage = event.usage
        if usage is not None:
            self.instruments.record_usage(
                call.attributes, usage.prompt_tokens, usage.completion_tokens
            )
        if call.responded:
            self._end(call)

    def shutdown(self) -> None:
        """Export what is left, then stop the exporters (blocking: run it in a thread)."""
        for provider in self.providers:
            if provider is not None:
                provider.shutdown()


TRACING = web.AppKey("tracing", Tracing)


def add_to(app: web.Application) -> None:
    """Trace `app`'s budgeted calls: its middleware, inside the request-id one (so it sees the
    answer `errors` made of an exception), and its providers, in a cleanup context."""
    app.middlewares.insert(1, middleware)
    app.cleanup_ctx.append(_running)


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    endpoint = endpoint_for(request.path, request.query)
    if endpoint is None or request.method != "POST":
        return await handler(request)
    tracing = request.app[TRACING]
    call = tracing.begin(request, endpoint.name)
    status = observe.CLIENT_CLOSED
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        tracing.responded(call, status)


async def _running(app: web.Application) -> AsyncIterator[None]:
    """The providers, from the environment; at stop, after every call settled, flushed."""
    app[TRACING] = from_environment()
    app[TRACING].subscribe(app[EVENTS])
    yield
    await within(app[TRACING].shutdown, STOP_SECONDS)


async def within(work: Callable[[], object], seconds: float) -> bool:
    """Run blocking `work` in a thread of its own, waiting for it at most `seconds`: False when
    it was left running (a daemon thread, which does not keep the process alive)."""
    finished = threading.Event()

    def run() -> None:
        try:
            work()
        finally:
            finished.set()

    threading.Thread(target=run, name="otel-shutdown", daemon=True).start()
    if await asyncio.to_thread(finished.wait, seconds):
        return True
    log.warning("OpenTelemetry: the last export did not finish within %.0f s; left", seconds)
    return False


def from_environment(env: Mapping[str, str] = os.environ) -> Tracing:
    """Providers exporting over OTLP/HTTP as the OTEL_* variables say: traces unless
    OTEL_TRACES_EXPORTER=none, metrics unless OTEL_METRICS_EXPORTER=none."""
    resource = _resource()
    ids = ChosenIds()
    tracer = meter = None
    timeout = None if env.get(TIMEOUT_ENV, "").strip() else EXPORT_SECONDS
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none":
        # No sampler given, the SDK reads OTEL_TRACES_SAMPLER (default: the parent's flag).
        sampler = None if env.get(SAMPLER_ENV, "").strip() else ALWAYS_ON
        tracer = TracerProvider(
            sampler, resource=resource, id_generator=ids, shutdown_on_exit=False
        )
        tracer.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(timeout=timeout)))
    if env.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower() != "none":
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(timeout=timeout))
        meter = MeterProvider([reader], resource=resource, shutdown_on_exit=False)
    return Tracing(tracer, meter, ids)


def _resource() -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, `cycles-proxy` for a service not named
    there, and an instance id of this process's own."""
    resource = Resource.create({SERVICE_INSTANCE_ID: str(uuid.uuid4())})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: SCOPE}))
    return resource
