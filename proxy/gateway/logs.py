"""Logging setup and the one redaction filter every log line passes through.

Provider keys, tenants' API keys and store passwords must never reach a log. Rather than trust
every call site, the filter rewrites the final formatted message and any exception text.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time

import orjson

from proxy.core.errors import CyclesError

REDACTED = "[REDACTED]"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer xyz / api-key: xyz / x-api-key=xyz, in headers, dicts or reprs.
    (
        re.compile(
            r"(?i)(['\"]?(?:authorization|proxy-authorization|api-key|x-api-key)['\"]?\s*[:=]\s*['\"]?)"
            r"(?:bearer\s+)?[^\s'\",}]+"
        ),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer " + REDACTED),
    # Provider and tenant keys wherever they appear.
    (re.compile(r"\b(?:sk|ck)-[A-Za-z0-9_-]{8,}"), REDACTED),
    # Passwords in URLs: redis://user:password@host, rediss+cluster://…, a webhook's
    # https://user:password@host/…; a userinfo without a password (a token) whole.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s'\"]*:)[^@\s/'\"]+@"), r"\1" + REDACTED + "@"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^:/@\s'\"\[]+@"), r"\1" + REDACTED + "@"),
    # Secrets in a URL's query: ?token=…, &api_key=…, &sig=…
    (
        re.compile(
            r"(?i)([?&](?:[a-z0-9_.-]*(?:token|key|secret|password|passwd|sig|signature|auth)"
            r"[a-z0-9_.-]*)=)[^&#\s'\"]+"
        ),
        r"\1" + REDACTED,
    ),
)


_SUSPECT = ("authorization", "api-key", "bearer", "sk-", "ck-", "://")
"""Lowercase text every pattern above needs in its match: a line with none of them (almost every
line) has nothing to redact, and substring tests are far cheaper than the patterns."""


def redact(text: str) -> str:
    lowered = text.lower()
    if not any(marker in lowered for marker in _SUSPECT):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Formats the record's message once, redacted, and freezes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        # Not always a tuple: a caller that logs with `exc_info=False` (uvloop's default
        # exception handler does) leaves False here, which logging itself treats as "none".
        if isinstance(record.exc_info, tuple) and record.exc_info[0] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, then the message. A message that is itself a
    JSON object (the per-call lines of `cycles.calls`) is merged in rather than quoted."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        message = record.getMessage()
        fields = _json_object(message)
        if fields is None:
            line["message"] = message
        else:
            line.update(fields)
        if record.exc_text:
            line["exception"] = record.exc_text
        # The filter already redacted the message; the whole line again, for anything added.
        return redact(orjson.dumps(line).decode())


def _json_object(message: str) -> dict[str, object] | None:
    if not message.startswith("{"):
        return None
    try:
        value = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


LOG_FORMAT_ENV = "CYCLES_LOG_FORMAT"


def setup_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """Root logger to stderr with redaction on the handler, so every logger is covered.
    `fmt` is `text` or `json`; None reads CYCLES_LOG_FORMAT (default text)."""
    fmt = fmt or os.environ.get(LOG_FORMAT_ENV) or "text"
    if fmt not in ("text", "json"):
        raise CyclesError(f"{LOG_FORMAT_ENV}={fmt!r}: use text or json.")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    # Neither format shows the caller, thread or process: don't collect them for every record
    # (the logging HOWTO's "Optimization" section; one line is logged per call).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
