"""The provider's error answers, as a tenant may read them.

An error body from the provider can describe the account every tenant shares: OpenAI's 429
names the organisation and that account's limit and usage ("Rate limit reached for gpt-4o in
organization org-… on tokens per min (TPM): Limit 30000, Used 29000, …"), a 401 the masked
provider key, a 403 the project, a 400 or 402 the account's spend cap or credit ("You have
reached your specified API usage limits", "can only afford 1234"). relay.py keeps the same
facts behind in the headers; this keeps them out of the body. What a tenant reads is an
allow-list, not a scrub: every error answer (status 400 and up) is rewritten into the API's own
error shape (OpenAI's; Anthropic's on /v1/messages) from

    message   the provider's only for an error about the request itself (REQUEST_ERRORS: 400,
              404, 422 and the like) and only without account detail (ACCOUNT_DETAIL); for
              401, 402, 403, 429, 5xx and anything else always the proxy's own, naming the
              class of problem and that the provider answered it
    type      the provider's when it is one of KNOWN_TYPES, else the status's own
    code      the provider's when it is one of KNOWN_CODES, else GENERIC_CODE
    param     the provider's when it is a plain token without account detail, else null

Any other body (an HTML page, text, other JSON) is replaced the same way. The original body
goes to the log (WARNING on this module's logger), redacted of keys, so the operator still
reads what the provider said.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from proxy.gateway import relay
from proxy.gateway.logs import redact
from proxy.metering.shapes.messages import ERROR_TYPES

log = logging.getLogger(__name__)

ACCOUNT_DETAIL = re.compile(
    r"(?ix)"
    r"\b(?:org|proj|user)[-_][a-z0-9]"  # organisation, project and user ids
    r"|\b(?:sk|ck)-"  # a key, even masked
    r"|\borgani[sz]ation\b|\bproject\b|\baccount"  # whose account it is, and its state
    r"|\b(?:limit|used|requested|remaining)\s*[:=]?\s*\d"  # the account's limits and usage
    r"|\b(?:tokens|requests|images)\s+per\s+(?:min|minute|hour|day)\b"
    r"|\b(?:[TR]P[MD]|IPM)\b"
    r"|\bquota|\bbilling\b|\bcredits?\b|\bbalance\b|\b(?:pricing|usage)\s+tier\b"
    r"|\b(?:usage|spend|spending)\s+(?:limit|cap)|\bafford|\bregain\s+access"
    r"|\bdeactivat|\bsuspend|\bpayment|\binvoice|[$€£]\s*\d"
    r"|\bsubscription\b|/account/|/settings/|console\.anthropic\.com"
)
"""What only the provider account's owner may read: its ids, keys, limits, usage, credit and
billing, its state. Checked over a message the allow-list would keep, and over `param`."""
REQUEST_ERRORS = frozenset({400, 404, 405, 409, 413, 415, 422})
"""The statuses of an error about the request itself, whose message (without account detail)
the tenant may read: it says what to fix."""
KNOWN_TYPES = frozenset(
    {
        "invalid_request_error",
        "not_found_error",
        "request_too_large",
        "authentication_error",
        "permission_error",
        "rate_limit_error",
        "server_error",
        "api_error",
        "overloaded_error",
        "timeout_error",
    }
)
"""Error types relayed as the provider wrote them; they name a class of problem, not the
account's state (`insufficient_quota`, `billing_error` and OpenAI's `tokens` are not here)."""
KNOWN_CODES = frozenset(
    {
        "context_length_exceeded",
        "invalid_value",
        "invalid_type",
        "invalid_prompt",
        "invalid_image",
        "invalid_image_format",
        "invalid_image_url",
        "image_too_large",
        "missing_required_parameter",
        "unknown_parameter",
        "unsupported_parameter",
        "unsupported_value",
        "integer_above_max_value",
        "integer_below_min_value",
        "string_above_max_length",
        "array_above_max_length",
        "empty_array",
        "model_not_found",
        "content_filter",
        "content_policy_violation",
        "rate_limit_exceeded",
        "server_error",
        "vector_store_timeout",
    }
    | {
        "invalid_base64_image",
        "image_too_small",
        "image_parse_error",
        "image_content_policy_violation",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
    }
)
"""Error codes relayed as the provider wrote them: what the call asked for, or a class of
failure an SDK acts on (`rate_limit_exceeded`); the second set are the Responses API's codes of
a failed response. Any other code becomes GENERIC_CODE."""
REQUEST_CODES = frozenset(
    code
    for code in KNOWN_CODES
    if code not in ("rate_limit_exceeded", "server_error", "vector_store_timeout")
)
"""The codes of an error about the request itself (an error event or a failed response has no
status of its own: these count as a 400, whose message may be kept)."""
GENERIC_CODE = "provider_error"
_TOKEN = re.compile(r"[A-Za-z0-9_.\[\]-]{1,64}")
MAX_MESSAGE = 1000
"""A kept message is cut to this many characters."""
MAX_ERROR_BODY = 64 * 1024
"""An error body is read up to this many bytes; a larger one is replaced as a body that is not
the API's error is."""
_LOGGED = 2000
"""Bytes of the original body written to the log."""


def error_response(
    upstream: aiohttp.ClientResponse,
    body: bytes,
    *,
    anthropic: bool,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The client's answer to the provider's error `upstream` (whose `body` was read): its
    status, the allow-listed headers (and `headers`), the body rewritten."""
    out = relay.headers_down(upstream.headers.items())
    out.update(headers or {})
    out["Content-Type"] = "application/json"
    rewritten = rewrite(upstream.status, body, anthropic=anthropic, upstream=str(upstream.url))
    return web.Response(body=rewritten, status=upstream.status, headers=out)


def rewrite(status: int, body: bytes, *, anthropic: bool, upstream: str = "") -> bytes:
    """The provider's error body `body`, as the tenant gets it (the module docstring says how);
    the original is logged."""
    log.warning(
        "provider error from %s: %d %s",
        upstream.split("?", 1)[0],
        status,
        redact(body[:_LOGGED].decode(errors="replace")),
    )
    error = _error_of(body)
    message = _message(status, error.get("message"))
    kind = _known(error.get("type"), KNOWN_TYPES)
    code = _known(error.get("code"), KNOWN_CODES) or GENERIC_CODE
    param = _token(error.get("param"))
    if anthropic:
        kind = kind or ERROR_TYPES.get(status) or _anthropic_default(status)
        shaped: dict[str, Any] = {"type": kind, "message": message, "code": code}
        return orjson.dumps({"type": "error", "error": shaped})
    kind = kind or _openai_default(status)
    shaped = {"message": message, "type": kind, "code": code, "param": param}
    return orjson.dumps({"error": shaped})


def _message(status: int, message: object) -> str:
    """The provider's `message` when the allow-list keeps it, else the proxy's own."""
    if status not in REQUEST_ERRORS or not isinstance(message, str) or not message:
        return _said(status)
    if ACCOUNT_DETAIL.search(message):
        return _said(status)
    return message[:MAX_MESSAGE]


def _known(value: object, known: frozenset[str]) -> str | None:
    return value if isinstance(value, str) and value in known else None


def _error_of(body: bytes) -> dict[str, Any]:
    """The error object of an OpenAI (`{"error": {...}}`) or Anthropic (`{"type": "error",
    "error": {...}}`) error body; {} for anything else."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def _token(value: object) -> str | None:
    """A plain token that names nothing of the account, or None."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        return None
    return None if ACCOUNT_DETAIL.search(value) else value


def _said(status: int) -> str:
    """What the provider's `status` means, in words of the proxy's own: the class of problem,
    and that the provider answered it."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    if status == 429:
        return (
            f"The provider is rate limiting the account this proxy uses ({status}); retry "
            "after the time Retry-After gives, or ask the operator for more capacity."
        )
    if status in (401, 402, 403):
        return (
            f"The provider refused this call for the account this proxy uses ({status} "
            f"{phrase}): a matter for the operator, who can read why in the proxy's log."
        )
    if status >= 500:
        return f"The provider failed to answer this call ({status} {phrase}); retry shortly."
    return (
        f"The provider refused this request ({status} {phrase}); the operator can read why in "
        "the proxy's log."
    )


def _openai_default(status: int) -> str:
    if status >= 500:
        return "server_error"
    return {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(
        status, "invalid_request_error"
    )


def _anthropic_default(status: int) -> str:
    return "api_error" if status >= 500 else "invalid_request_error"
