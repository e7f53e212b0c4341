"""Logging setup and the one redaction filter every log line passes through.

Provider keys, tenants' API keys and store passwords must never reach a log. Rather than trust
every call site, the filter rewrites the final formatted message and any exception text.

A line is formatted when it is logged, but written with the other lines of the same event-loop
iteration, in as few writes as a shared pipe keeps whole (`LineBuffer`): the call line costs no
system call on the request's path. Lines logged with no loop running (start-up, another thread)
are written at once, with any still buffered before them; `flush` writes what is left (serve
calls it when it stops).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import TextIO

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
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.msg != message:
            # What was cut may have been inside a JSON string: no longer splice it unchecked.
            record.__dict__.pop(JSON_OBJECT, None)
        # Not always a tuple: a caller that logs with `exc_info=False` (uvloop's default
        # exception handler does) leaves False here, which logging itself treats as "none".
        if isinstance(record.exc_info, tuple) and record.exc_info[0] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
        return True


class Seconds:
    """A time to the second, formatted once per second: one line is logged per call, and strftime
    was most of what formatting a line's time cost."""

    def __init__(self, fmt: str, convert: Callable[[float], time.struct_time]) -> None:
        self._fmt, self._convert = fmt, convert
        self._second, self._text = -1, ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._text = second, time.strftime(self._fmt, self._convert(created))
        return self._text


class TextFormatter(logging.Formatter):
    """`asctime level logger message`, the time as logging's default (local, with milliseconds)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._seconds = Seconds("%Y-%m-%d %H:%M:%S", time.localtime)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{self._seconds(record.created)},{int(record.msecs):03d}"


JSON_OBJECT = "json_object"
"""Pass `extra={JSON_OBJECT: True}` with a message that orjson made of a dict whose keys are not
ts, level, logger or exception (the call line): the JSON format splices it in unparsed."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, then the message. A message that is itself a
    JSON object (the per-call lines of `cycles.calls`) is merged in rather than quoted."""

    def __init__(self) -> None:
        super().__init__()
        self._seconds = Seconds("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": f"{self._seconds(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        message = record.getMessage()
        if record.__dict__.get(JSON_OBJECT) and not record.exc_text:
            head = orjson.dumps(line)
            return redact(head[:-1].decode() + "," + message[1:])
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


class LineBuffer(logging.StreamHandler[TextIO]):
    """A stream handler writing the lines of one event-loop iteration together, in the order
    they were logged; at once when no loop runs in the logging thread.

    Together is in writes of at most PIPE_BUF bytes, each ending at a line's end (`chunks`):
    `--workers` processes share one stderr pipe, where only such writes are never interleaved
    with another's. A line the stream cannot encode is written with replacements, and reported;
    the other lines of its iteration are written as they are."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record))
        except Exception:
            self.handleError(record)
            return
        loop = asyncio._get_running_loop()
        if loop is None:
            self.flush()
        elif self._flush_on is not loop:
            # A flush left pending on a loop that stopped is superseded by this one.
            self._flush_on = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every buffered line (also called by logging.shutdown at exit)."""
        self.acquire()
        try:
            lines, self._lines = self._lines, []
            self._flush_on = None
            if lines:
                self._write(lines)
        finally:
            self.release()

    def _write(self, lines: list[str]) -> None:
        for chunk in chunks(lines, self.terminator):
            try:
                try:
                    self._put(chunk)
                except UnicodeEncodeError:
                    # Nothing of the chunk was written (it is encoded whole): say so once, and
                    # write it again with what the stream cannot encode replaced.
                    self.handleError(logging.makeLogRecord({"msg": "a line not encodable"}))
                    encoding = getattr(self.stream, "encoding", None) or "utf-8"
                    self._put(chunk.encode(encoding, "replace").decode(encoding))
            except RecursionError:
                raise
            except Exception:
                self._failed(chunk)

    def _put(self, chunk: str) -> None:
        self.stream.write(chunk)
        self.stream.flush()

    def _failed(self, chunk: str) -> None:
        # As StreamHandler does with a line it cannot write: report it (logging's handleError,
        # on stderr, never through a logger) and go on. Logging it would schedule another
        # write that fails, once per loop iteration, for ever.
        lines = chunk.count(self.terminator)
        self.handleError(logging.makeLogRecord({"msg": f"{lines} lines not written"}))


PIPE_BUF = 4096
"""The largest write to a pipe POSIX keeps whole (Linux's PIPE_BUF): `--workers` share stderr,
and a longer write may be interleaved, mid-line, with another process's."""


def chunks(lines: list[str], terminator: str) -> list[str]:
    """`lines`, each ended by `terminator`, joined into as few writes as keep every write at
    most PIPE_BUF bytes (UTF-8) and ending at a line's end; a longer line is a write alone."""
    found: list[str] = []
    start, size = 0, 0
    for end, line in enumerate(lines):
        length = (len(line) if line.isascii() else len(line.encode())) + len(terminator)
        if size and size + length > PIPE_BUF:
            found.append(terminator.join(lines[start:end]) + terminator)
            start, size = end, 0
        size += length
    if start < len(lines):
        found.append(terminator.join(lines[start:]) + terminator)
    return found


def flush() -> None:
    """Write the lines the root logger's handlers still hold (serve, before its process ends:
    a forked worker exits without logging's own flush at exit)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


LOG_FORMAT_ENV = "CYCLES_LOG_FORMAT"


def setup_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """Root logger to stderr with redaction on the handler, so every logger is covered.
    `fmt` is `text` or `json`; None reads CYCLES_LOG_FORMAT (default text)."""
    fmt = fmt or os.environ.get(LOG_FORMAT_ENV) or "text"
    if fmt not in ("text", "json"):
        raise CyclesError(f"{LOG_FORMAT_ENV}={fmt!r}: use text or json.")
    handler = LineBuffer(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(RedactingFilter())
    # Neither format shows the caller, thread or process: don't collect them for every record
    # (the logging HOWTO's "Optimization" section; one line is logged per call).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    flush()  # what the handlers replaced still hold
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
