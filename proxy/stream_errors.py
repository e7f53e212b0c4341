"""A provider's error event in the middle of a stream, as a tenant may read it.

A stream that has begun (200, headers sent) can still end in an error: OpenAI's chat and
completions write `data: {"error": {...}}`, Anthropic `event: error` with `{"type": "error",
"error": {...}}`, the Responses API `event: error` with the error's fields at the top. Such an
event can name the shared account as an error answer can (an account rate limit met mid-stream),
so it goes through the same scrubbing (provider_errors.rewrite, which logs the original) and
reaches the client in the same shape, rewritten. An event has no status of its own: the one its
error type stands for decides how it is treated (`STATUS_OF_TYPE`; anything else counts as a
server error). Only what the client reads changes: the usage tracker sees the original event.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy import provider_errors
from proxy.sse import SSEEvent

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
}
"""The status an error event's `type` (or `code`) stands for; others are 500."""


def is_error(event: SSEEvent, obj: dict[str, Any]) -> bool:
    """Whether `event` (whose data parsed as `obj`) is an error event of any provider's API."""
    return (
        event.event == "error" or obj.get("type") == "error" or isinstance(obj.get("error"), dict)
    )


def scrubbed(event: SSEEvent, obj: dict[str, Any], *, endpoint: str, upstream: str) -> bytes:
    """The bytes the client gets for the error event `event`: the same shape, scrubbed."""
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
    name = b"" if event.event is None else b"event: " + event.event.encode() + b"\n"
    return name + b"data: " + body + b"\n\n"


def _status(error: dict[str, Any]) -> int:
    for name in ("type", "code"):
        value = error.get(name)
        if isinstance(value, str) and value in STATUS_OF_TYPE:
            return STATUS_OF_TYPE[value]
    return 500
