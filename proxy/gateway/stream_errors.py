"""A provider's error inside a 200 answer, as a tenant may read it.

A stream that has begun (200, headers sent) can still end in an error: OpenAI's chat and
completions write `data: {"error": {...}}`, Anthropic `event: error` with `{"type": "error",
"error": {...}}`, the Responses API `event: error` with the error's fields at the top. The
Responses API also fails a response inside a 200: `event: response.failed` ends a stream, and a
whole answer comes with `status: failed`, each with the response's `error` (`code`, `message`)
filled in. Any of these can name the shared account as an error answer can (an account rate
limit met mid-call), so it goes through the same scrubbing (provider_errors.rewrite, which logs
the original) and reaches the client in the same shape, rewritten: a failed response keeps its
event type, status and code, so SDKs still see it fail. (`incomplete_details` holds only a
reason token, never the provider's words.) An error has no status of its own: the one its type
or code stands for decides how it is treated (`STATUS_OF_TYPE`; anything else counts as a
server error). Only what the client reads changes: the usage tracker and the charge see the
original.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.gateway import provider_errors
from proxy.gateway.sse import SSEEvent

STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "tokens": 429,
    "requests": 429,
    "insufficient_quota": 429,
    "overloaded_error": 529,
    # A Responses failure about the request itself: its message says what to change.
    **dict.fromkeys(provider_errors.REQUEST_CODES, 400),
}
"""The status an error event's `type` (or `code`) stands for; others are 500."""


def is_error(event: SSEEvent, obj: dict[str, Any]) -> bool:
    """Whether `event` (whose data parsed as `obj`) is an error event of any provider's API, or
    a Responses event whose response carries an error (`response.failed`)."""
    return (
        event.event == "error"
        or obj.get("type") == "error"
        or isinstance(obj.get("error"), dict)
        or _failed(obj.get("response"))
    )


def scrubbed(event: SSEEvent, obj: dict[str, Any], *, endpoint: str, upstream: str) -> bytes:
    """The bytes the client gets for the error event `event`: the same shape, scrubbed."""
    name = b"" if event.event is None else b"event: " + event.event.encode() + b"\n"
    response = obj.get("response")
    if isinstance(response, dict) and _failed(response):
        shown = {**obj, "response": failed_response(response, upstream=upstream)}
        return name + b"data: " + orjson.dumps(shown) + b"\n\n"
    return name + b"data: " + _error_event(obj, endpoint=endpoint, upstream=upstream) + b"\n\n"


def scrubbed_answer(endpoint: str, body: bytes, *, upstream: str) -> bytes:
    """A whole 2xx answer as the client gets it: a failed Responses answer with its error
    scrubbed, anything else as it is."""
    if endpoint != "responses" or b'"failed"' not in body:
        return body  # cheap: a failed response says so in its status
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not _failed(answer):
        return body
    return orjson.dumps(failed_response(answer, upstream=upstream))


def failed_response(response: dict[str, Any], *, upstream: str) -> dict[str, Any]:
    """A Responses `response` object whose `error` the provider filled in, that error scrubbed
    and in its own shape (`code`, `message`, and `type`, `param` where it had them); every
    other field as it was."""
    error = response["error"]
    status = _status(error)
    body = provider_errors.rewrite(
        status, orjson.dumps({"error": error}), anthropic=False, upstream=upstream
    )
    fields = orjson.loads(body)["error"]
    kept = ("code", "message", *(key for key in ("type", "param") if key in error))
    return {**response, "error": {key: fields[key] for key in kept}}


def _failed(response: object) -> bool:
    """Whether `response` is a Responses response object with an error."""
    return isinstance(response, dict) and isinstance(response.get("error"), dict)


def _error_event(obj: dict[str, Any], *, endpoint: str, upstream: str) -> bytes:
    """The data of an error event (`{"error": ...}` or Responses' fields at the top), scrubbed."""
    error = obj.get("error")
    if not isinstance(error, dict):
        error = {key: value for key, value in obj.items() if key != "type"}
    status = _status(error)
    anthropic = endpoint == "messages"
    body = provider_errors.rewrite(
        status, orjson.dumps({"error": error}), anthropic=anthropic, upstream=upstream
    )
    if endpoint == "responses":
        fields = orjson.loads(body)["error"]
        out: dict[str, Any] = {"type": "error", **{k: v for k, v in fields.items() if k != "type"}}
        if "sequence_number" in obj:
            out["sequence_number"] = obj["sequence_number"]
        body = orjson.dumps(out)
    return body


def _status(error: dict[str, Any]) -> int:
    for name in ("type", "code"):
        value = error.get(name)
        if isinstance(value, str) and value in STATUS_OF_TYPE:
            return STATUS_OF_TYPE[value]
    return 500
