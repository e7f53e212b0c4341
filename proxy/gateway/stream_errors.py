"""A provider's error inside a 200 answer, as a tenant may read it.

A stream that has begun (200, headers sent) can still end in an error: OpenAI's chat and
completions write `data: {"error": {...}}`, Anthropic `event: error` with `{"type": "error",
"error": {...}}`, the Responses API `event: error` with the error's fields at the top. The
Responses API also fails a response inside a 200: `event: response.failed` ends a stream, and a
whole answer comes with `status: failed`, each with the response's `error` (`code`, `message`)
filled in. Other servers put an `error` object at the top of a whole 200 answer (OpenRouter:
choices ending in `finish_reason: error`, the error beside the usage; a Responses answer
`incomplete` with its error). Any of these can name the shared account as an error answer can
(an account rate limit met mid-call), so it goes through the same scrubbing
(provider_errors.rewrite, which logs the original) and reaches the client in the same shape,
rewritten: a failed response keeps its event type, status and code, so SDKs still see it fail.
A whole answer that names an error but is not a JSON object cannot be scrubbed field by field:
it is replaced by a generic error (fail closed). (`incomplete_details` holds only a reason
token, never the provider's words.) An error has no status of its own: the one its type or code
stands for decides how it is treated (`STATUS_OF_TYPE`; anything else counts as a server
error). Only what the client reads changes: the usage tracker and the charge see the original.
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
        if obj.get("error") is not None:  # an error beside the response's: as scrubbed
            shown["error"] = scrubbed_error(obj["error"], anthropic=False, upstream=upstream)
        return name + b"data: " + orjson.dumps(shown) + b"\n\n"
    return name + b"data: " + _error_event(obj, endpoint=endpoint, upstream=upstream) + b"\n\n"


def scrubbed_answer(endpoint: str, body: bytes, answer: object, *, upstream: str) -> bytes:
    """A whole 2xx answer as the client gets it, from its bytes and what they parsed to (None:
    not JSON): its top-level `error` scrubbed (every other field as it was); a body that names
    an error but is not a JSON object, a generic error; any other body itself (the same object:
    the caller tells a rewrite by identity)."""
    if b'"error"' not in body:
        return body  # cheap: an answer without the word has no error to scrub
    anthropic = endpoint == "messages"
    if not isinstance(answer, dict):
        # Not an object whose fields can be kept: fail closed, the original goes to the log.
        return provider_errors.rewrite(502, body, anthropic=anthropic, upstream=upstream)
    if answer.get("error") is None:
        return body
    error = scrubbed_error(answer["error"], anthropic=anthropic, upstream=upstream)
    return orjson.dumps({**answer, "error": error})


def failed_response(response: dict[str, Any], *, upstream: str) -> dict[str, Any]:
    """A Responses `response` object whose `error` the provider filled in, that error scrubbed;
    every other field as it was."""
    return {
        **response,
        "error": scrubbed_error(response["error"], anthropic=False, upstream=upstream),
    }


def scrubbed_error(error: object, *, anthropic: bool, upstream: str) -> dict[str, Any]:
    """An `error` object inside a 200, scrubbed, in its own shape: `code` and `message`
    (Anthropic's: `type` and `message`), and `type`, `code`, `param` where it had them; what
    else it carried (OpenRouter's `metadata`, the upstream's raw answer) is dropped. An error
    that is not an object gets the generic words of its status."""
    given = error if isinstance(error, dict) else {}
    body = provider_errors.rewrite(
        _status(given), orjson.dumps({"error": error}), anthropic=anthropic, upstream=upstream
    )
    fields: dict[str, Any] = orjson.loads(body)["error"]
    always = ("type", "message") if anthropic else ("code", "message")
    return {key: value for key, value in fields.items() if key in always or key in given}


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
