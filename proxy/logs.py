"""Logging setup and the one redaction filter every log line passes through.

Provider keys, tenants' API keys and store passwords must never reach a log. Rather than trust
every call site, the filter rewrites the final formatted message and any exception text.
"""

from __future__ import annotations

import logging
import re
import sys

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
    # Passwords in store URLs: redis://user:password@host
    (re.compile(r"(?i)((?:rediss?|redis\+cluster)://[^:/@\s]*:)[^@\s]+@"), r"\1" + REDACTED + "@"),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Formats the record's message once, redacted, and freezes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def setup_logging(level: str = "INFO") -> None:
    """Root logger to stderr with redaction on the handler, so every logger is covered."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
