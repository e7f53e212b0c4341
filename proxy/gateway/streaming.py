"""Relaying a budgeted answer and reading what it cost: streamed (SSE) or whole (JSON)."""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from proxy.budget.call import Sent
from proxy.core import encodings
from proxy.gateway import relay, stream_errors
from proxy.gateway.settle import Flight, Outcome
from proxy.gateway.sse import SSEEvent
from proxy.metering.usage import StreamUsage
from proxy.policy.model_rules import hides_reasoning

log = logging.getLogger(__name__)


def parsed_answer(call: Sent, body: bytes) -> object:
    """A whole 2xx answer, parsed once for its charge and its scrubbing; None when it is not
    JSON (logged)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        log.warning("upstream answered %s with a body that is not JSON", call.endpoint.suffix)
        return None


def usage_of_answer(call: Sent, answer: object) -> Outcome:
    """A whole 2xx answer (parsed_answer): its `usage`, or no report (charged at the
    reservation)."""
    usage = call.endpoint.usage(answer) if isinstance(answer, dict) else None
    return Outcome(usage=usage)


async def relay_stream(flight: Flight, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """Relay the SSE stream event by event, then settle from its final usage event."""
    call = flight.sent
    headers = relay.headers_down(upstream.headers.items())
    headers.update(flight.verdict.headers)
    response = web.StreamResponse(status=upstream.status, headers=headers)
    tracker = call.endpoint.tracker()
    endpoint, url = call.endpoint.name, str(upstream.url)

    def on_event(event: SSEEvent) -> bytes | None:
        shown = _observe(tracker, event, hide_usage=call.hide_usage_chunk)
        if not isinstance(shown, dict):
            return event.raw if shown else None
        return stream_errors.scrubbed(event, shown, endpoint=endpoint, upstream=url)

    result = relay.StreamResult(client_gone=True)
    try:
        try:
            await response.prepare(flight.request)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            log.info("client left before the stream started; draining for usage")
        result = await relay.pump(
            upstream, response if response.prepared else None, on_event, call.timeouts
        )
    finally:
        outcome = _outcome(call, flight.policy.limits.tokenize_max_bytes, tracker, result)
        await flight.settle(outcome)
    if not result.client_gone:
        with suppress(ConnectionError, aiohttp.ClientConnectionResetError):
            await response.write_eof()
    return response


def _observe(tracker: StreamUsage, event: SSEEvent, *, hide_usage: bool) -> bool | dict[str, Any]:
    """Feed one event to the usage tracker; False for the usage chunk the client did not ask
    for, the event's object for a provider's error event (which the client gets scrubbed)."""
    data = event.data
    if not data:
        return True
    if data == "[DONE]":
        tracker.mark_done()
        return True
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return True
    if not isinstance(obj, dict):
        return True
    tracker.feed(obj)
    if stream_errors.is_error(event, obj):
        return obj
    return not (hide_usage and tracker.is_usage_only(obj))


def _outcome(
    call: Sent, tokenize_max_bytes: int, tracker: StreamUsage, result: relay.StreamResult
) -> Outcome:
    enc = encodings.get_encoding(call.price.encoding)
    counted = tracker.counted_completion_tokens(enc, tokenize_max_bytes)
    if tracker.usage is None:
        # Without a report the count is the charge: scaled, like the estimate, to the model's
        # own tokenizer. Beside a report it is only a floor, and the encoding's own count is
        # the evidence.
        counted = call.scaled_count(counted)
    # A stream with no JSON event at all is no answer: the provider said 200 and may bill it.
    ended = tracker.done or tracker.final
    complete = result.complete and ended and tracker.events > 0
    hidden = tracker.usage is None and hides_reasoning(call.price.reasoning, call.body)
    if hidden and complete:
        log.info(
            "stream of %s ended without a usage report; the model may bill reasoning tokens it "
            "never streams, so it is charged its reservation, not its %d counted tokens",
            call.model,
            counted,
        )
    return Outcome(
        usage=tracker.usage,
        counted_completion=counted,
        complete=complete,
        streamed=True,
        hidden_reasoning=hidden,
    )
