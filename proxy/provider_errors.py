"""The provider's error answers, as a tenant may read them.

An error body from the provider can describe the account every tenant shares: OpenAI's 429
names the organisation and that account's limit and usage ("Rate limit reached for gpt-4o in
organization org-… on tokens per min (TPM): Limit 30000, Used 29000, …"), a 401 the masked
provider key, a 403 the project. relay.py keeps the same facts behind in the headers; this keeps
them out of the body. Every error answer (status 400 and up) is rewritten into the API's own
error shape (OpenAI's; Anthropic's on /v1/messages) from what can be read in it:

    type, code, param   kept when they are plain tokens (`rate_limit_exceeded`), else left out
    message             kept unless it carries account detail (ACCOUNT_DETAIL), else replaced
                        by one that says what the status means and that the provider said it
    any other body      (an HTML page, text, other JSON) replaced the same way

The original body goes to the log (WARNING on this module's logger), redacted of keys, so the
operator still reads what the provider said.
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

from proxy import relay
from proxy.logs import redact
from proxy.shapes.messages import ERROR_TYPES

log = logging.getLogger(__name__)

ACCOUNT_DETAIL = re.compile(
    r"(?ix)"
    r"\b(?:org|proj|user)[-_][a-z0-9]"  # organisation, project and user ids
    r"|\b(?:sk|ck)-"  # a key, even masked
    r"|\borgani[sz]ation\b|\bproject\b"  # whose account it is
    r"|\b(?:limit|used|requested|remaining)\s*[:=]?\s*\d"  # the account's limits and usage
    r"|\b(?:tokens|requests|images)\s+per\s+(?:min|minute|hour|day)\b"
    r"|\b(?:[TR]P[MD]|IPM)\b"
    r"|\bquota\b|\bbilling\b|\bcredit\s+balance\b|\b(?:pricing|usage)\s+tier\b"
    r"|\bsubscription\b|/account/|console\.anthropic\.com"
)
"""What only the provider account's owner may read: its ids, keys, limits, usage and billing."""
_TOKEN = re.compile(r"[A-Za-z0-9_.\[\]-]{1,64}")
MAX_MESSAGE = 1000
"""A kept message is cut to this many characters."""
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
    message = error.get("message")
    if not isinstance(message, str) or not message or ACCOUNT_DETAIL.search(message):
        message = _said(status)
    kind, code, param = (_token(error.get(name)) for name in ("type", "code", "param"))
    if anthropic:
        kind = kind or ERROR_TYPES.get(status) or _anthropic_default(status)
        shaped: dict[str, Any] = {"type": kind, "message": message[:MAX_MESSAGE]}
        if code is not None:
            shaped["code"] = code
        return orjson.dumps({"type": "error", "error": shaped})
    kind = kind or ("server_error" if status >= 500 else "invalid_request_error")
    shaped = {"message": message[:MAX_MESSAGE], "type": kind, "code": code, "param": param}
    return orjson.dumps({"error": shaped})


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
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else None


def _said(status: int) -> str:
    """What the provider's `status` means, in words of the proxy's own."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    if status == 429:
        return (
            f"The provider is rate limiting the account this proxy uses ({status}); retry "
            "after the time Retry-After gives, or ask the operator for more capacity."
        )
    if status in (401, 403):
        return (
            f"The provider refused this call for the account this proxy uses ({status} "
            f"{phrase}); the operator can read why in the proxy's log."
        )
    return f"The provider answered {status} {phrase}."


def _anthropic_default(status: int) -> str:
    return "api_error" if status >= 500 else "invalid_request_error"
