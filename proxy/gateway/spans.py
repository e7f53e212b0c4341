"""What a call's span says, from the pipeline's events (tracing.py makes and ends the span):
its GenAI and `cycles.*` attributes, and its children, made after the fact from the times the
events carry.

    attribute                          from
    gen_ai.operation.name              the endpoint (genai.py)
    gen_ai.provider.name               the endpoint and the upstream's kind
    gen_ai.request.model               the model asked for
    gen_ai.response.model              the model sent upstream (a degrade rule's, if one fired)
    gen_ai.usage.input_tokens, …       the provider's usage report (none without one)
    cycles.tenant, cycles.scope        who is charged
    cycles.decision, cycles.would_be,  ALLOW, ALLOW_WITH_CAPS or DENY; what enforcement decides
    cycles.rule                        (shadow mode); the degrade rule that served the call
    cycles.reserved.<unit>             what the reservation holds (usd: 10**-8 dollars)
    cycles.cost.<unit>                 what was charged (nothing: released)
    cycles.remaining, …remaining.unit  what the tightest budget line had left after the reserve
"""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from proxy.budget.decision import tightest
from proxy.core.errors import QuotaExceeded
from proxy.gateway import genai
from proxy.gateway.events import Asked, CallDecided, CallDenied, CallSettled
from proxy.store.ledger.base import ReserveResult


class Clock:
    """Converts the pipeline's time.monotonic() readings to the epoch nanoseconds spans take."""

    def __init__(self) -> None:
        self.now = time.monotonic()
        self.now_ns = time.time_ns()

    def ns(self, monotonic: float) -> int:
        return self.now_ns - int((self.now - monotonic) * 1e9)


def add_decision(
    tracer: trace.Tracer,
    span: trace.Span,
    attributes: MutableMapping[str, str],
    event: CallDecided,
    clock: Clock,
) -> None:
    """An admitted call: what it asked and what goes upstream, the decision, its reserve."""
    assert event.routed is not None
    sent, verdict = event.routed.sent, event.routed.verdict
    attributes[genai.RESPONSE_MODEL] = sent.model
    said = _described(attributes, event.routed.asked, sent.upstream.kind)
    if not span.is_recording():  # sampled out: only the metrics' attributes are needed
        return
    said |= {"cycles.decision": verdict.kind, "cycles.would_be": verdict.would_be}
    if verdict.rule is not None:
        said["cycles.rule"] = verdict.rule
    said |= _amounts("cycles.reserved", event.reserved) | _remaining(event.result)
    _update(span, event.routed.asked, said)
    _reserve_span(tracer, span, event.reserving, clock)


def add_denial(
    tracer: trace.Tracer,
    span: trace.Span,
    attributes: MutableMapping[str, str],
    event: CallDenied,
    clock: Clock,
) -> None:
    """A denied call: an error status, what denied it, its reserve."""
    assert event.asked is not None
    denial = event.denial
    reason = denial.code if isinstance(denial, QuotaExceeded) and denial.code else denial.type
    attributes[genai.ERROR_TYPE] = reason
    said = _described(attributes, event.asked, event.asked.call.upstream.kind)
    if not span.is_recording():
        return
    said |= {"cycles.decision": "DENY"} | _remaining(event.result)
    _update(span, event.asked, said)
    span.set_status(Status(StatusCode.ERROR, denial.message))
    _reserve_span(tracer, span, event.reserving, clock)


def add_settlement(
    tracer: trace.Tracer, span: trace.Span, event: CallSettled, clock: Clock
) -> None:
    """A settled call: its usage and charge; its upstream and settle spans (the upstream's id
    is the one chosen before it was sent: tracing.ChosenIds)."""
    if not span.is_recording():
        return
    said: dict[str, AttributeValue] = {}
    usage = event.usage
    if usage is not None:
        said |= {
            genai.INPUT_TOKENS: usage.prompt_tokens,
            genai.OUTPUT_TOKENS: usage.completion_tokens,
        }
    if event.charge is None:
        said["cycles.released"] = True
    else:
        said |= _amounts("cycles.cost", event.charge)
    span.set_attributes(said)
    timings = event.timings
    if timings is None:
        return
    parent = trace.set_span_in_context(span)
    answered = timings.started + timings.total
    upstream = tracer.start_span(
        "cycles.upstream",
        parent,
        SpanKind.CLIENT,
        {"cycles.endpoint": timings.endpoint},
        start_time=clock.ns(timings.started),
    )
    if timings.first_byte is not None:
        first = clock.ns(timings.started + timings.first_byte)
        upstream.add_event("first_byte", timestamp=first)
    upstream.end(end_time=clock.ns(answered))
    settle = tracer.start_span("cycles.settle", parent, start_time=clock.ns(answered))
    settle.end(end_time=clock.now_ns)


def _described(
    attributes: MutableMapping[str, str], asked: Asked, kind: str
) -> dict[str, AttributeValue]:
    """The GenAI attributes (also the metrics'), and who is charged."""
    endpoint = asked.call.endpoint.name
    attributes[genai.PROVIDER] = genai.provider(endpoint, kind)
    attributes[genai.REQUEST_MODEL] = asked.call.model
    return {
        **attributes,
        "cycles.tenant": asked.scope.tenant,
        "cycles.scope": asked.scope.path(),
    }


def _update(span: trace.Span, asked: Asked, said: Mapping[str, AttributeValue]) -> None:
    span.update_name(genai.span_name(asked.call.endpoint.name, asked.call.model))
    span.set_attributes(said)


def _amounts(prefix: str, amounts: Mapping[str, int]) -> dict[str, AttributeValue]:
    return {f"{prefix}.{unit.lower()}": amount for unit, amount in amounts.items()}


def _remaining(result: ReserveResult | None) -> dict[str, AttributeValue]:
    line = tightest(result.lines) if result is not None else None
    if line is None:
        return {}
    return {"cycles.remaining": line.remaining, "cycles.remaining.unit": str(line.line.unit)}


def _reserve_span(
    tracer: trace.Tracer, span: trace.Span, reserving: tuple[float, float] | None, clock: Clock
) -> None:
    if reserving is None:
        return
    parent = trace.set_span_in_context(span)
    child = tracer.start_span("cycles.reserve", parent, start_time=clock.ns(reserving[0]))
    child.end(end_time=clock.ns(reserving[1]))
