"""An incremental server-sent-events decoder, fed chunks of any size (after httpx's line decoder).

`feed` accepts bytes split anywhere: mid-line, mid-UTF-8 sequence, between the CR and LF of a
CRLF. Lines are found in bytes (terminators are ASCII) and decoded only when complete, so a split
character is never seen. Each chunk is scanned once and only the unfinished line is carried
over, so decoding is linear in the stream's length. Chunks without a CR (every provider's
streams) take a faster path that cuts whole events at their blank line and parses each event's
lines at once; any CR, a first chunk (which may carry a BOM) or a line split across chunks
takes the line-by-line path, and both leave the decoder in the same state.

Every byte fed ends up in exactly one event's `raw`, in order: the relay forwards `raw` verbatim
and the bytes the client receives are the bytes the upstream sent. Blocks with no `data:` line
(keep-alive comments, stray blank lines) are events too, with `data` None. Unlike a browser,
`flush` also returns an event left unterminated at the end of the stream: its usage report, if
any, is evidence settlement should not throw away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = "\ufeff"
_BOM_FIRST_BYTE = b"\xef"
"""The first byte of a UTF-8 BOM: a stream that begins with it takes the line path."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    raw: bytes
    """The event's bytes as received, including the blank line that ended it."""
    data: str | None
    """The `data:` lines joined with "\\n"; None when the block had none."""
    event: str | None = None
    """The `event:` name; None means the default, "message"."""
    id: str | None = None
    """This block's `id:`, if it had one."""


def _data_only(raw: bytes) -> SSEEvent | None:
    """The event of a block that is one `data:` line (nearly every event any provider sends),
    read without the general field parser; None for any other block. Called by the whole-event
    path only, where no field of an earlier event is pending."""
    if not raw.startswith(b"data:") or raw.find(b"\n", 5, len(raw) - 2) >= 0:
        return None
    value = raw[6:-2] if raw[5:6] == b" " else raw[5:-2]
    return SSEEvent(raw=raw, data=value.decode("utf-8", "replace"))


class SSEDecoder:
    """Turns chunks of an SSE byte stream into events. Call `flush` once the stream ends."""

    def __init__(self) -> None:
        self._line = bytearray()
        self._cr_pending = False
        self._started = False
        self._raw = bytearray()
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._dispatched = False
        self._tail = bytearray()
        """Fast path: the bytes of the event under way (no CR in them)."""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by `chunk`."""
        if self._fast(chunk):
            return self._feed_events(chunk)
        if self._tail:
            chunk = bytes(self._tail) + chunk
            self._tail.clear()
        return self._feed_lines(chunk)

    def _fast(self, chunk: bytes) -> bool:
        """Whether `chunk` can take the whole-event path: no CR anywhere, and past the first
        event (whose first line may carry a BOM), or the stream's very first bytes when they
        do not begin one (a provider's first chunk often holds most of a short answer). An
        event the line path has begun moves over: its bytes so far become the tail and are
        parsed again with the rest."""
        if self._cr_pending or b"\r" in chunk or b"\r" in self._raw:
            return False
        if not self._dispatched:
            fresh = not (self._started or self._raw or self._line or self._tail)
            if not fresh or chunk[:1] in (b"", _BOM_FIRST_BYTE):
                return False
            self._started = self._dispatched = True
            return True
        if self._raw or self._line:
            self._tail += self._raw
            self._tail += self._line
            self._raw.clear()
            self._line.clear()
            self._data, self._event, self._id = [], None, None
        return True

    def _feed_events(self, chunk: bytes) -> list[SSEEvent]:
        """Whole events, each ended by a blank line: LF LF. The tail already searched is not
        searched again (but for its last byte, which may begin the LF LF), so an event arriving
        in many chunks is still read in linear time."""
        tail = self._tail
        searched = max(len(tail) - 1, 0)
        tail += chunk
        events: list[SSEEvent] = []
        start, size = 0, len(tail)
        while start < size:
            if tail[start] == 0x0A:  # a stray blank line: an event with no data
                events.append(SSEEvent(raw=b"\n", data=None))
                start += 1
                continue
            end = tail.find(b"\n\n", max(start, searched))
            if end < 0:
                break
            raw = bytes(tail[start : end + 2])
            events.append(_data_only(raw) or self._parse_block(raw[:-2], raw))
            start = end + 2
        del tail[:start]
        return events

    def _parse_block(self, block: bytes, raw: bytes) -> SSEEvent:
        for line in block.decode("utf-8", "replace").split("\n"):
            self._field(line)
        return self._dispatch(raw)

    def _feed_lines(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        start = 0
        if self._cr_pending and chunk:
            # The previous chunk ended in CR: a leading LF makes it one CRLF terminator.
            self._cr_pending = False
            start = 1 if chunk.startswith(b"\n") else 0
            self._end_line(b"\r\n" if start else b"\r", events)
        for match in _LINE_END.finditer(chunk, start):
            self._line += chunk[start : match.start()]
            start = match.end()
            if match.group() == b"\r" and start == len(chunk):
                self._cr_pending = True
                return events
            self._end_line(match.group(), events)
        self._line += chunk[start:]
        return events

    def flush(self) -> list[SSEEvent]:
        """At the end of the stream: the last event, even if no blank line ended it."""
        events: list[SSEEvent] = []
        if self._tail:
            events += self._feed_lines(bytes(self._tail))
            self._tail.clear()
        if self._cr_pending:
            self._cr_pending = False
            self._end_line(b"\r", events)
        if self._line:
            self._end_line(b"", events)
        if self._raw:
            events.append(self._dispatch())
        return events

    def _end_line(self, terminator: bytes, events: list[SSEEvent]) -> None:
        line = bytes(self._line)
        self._line.clear()
        self._raw += line
        self._raw += terminator
        first, self._started = not self._started, True
        if line:
            text = line.decode("utf-8", "replace")
            self._field(text.removeprefix(_BOM) if first else text)
        else:
            events.append(self._dispatch())

    def _field(self, line: str) -> None:
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value

    def _dispatch(self, raw: bytes | None = None) -> SSEEvent:
        self._dispatched = True
        event = SSEEvent(
            raw=bytes(self._raw) if raw is None else raw,
            data="\n".join(self._data) if self._data else None,
            event=self._event,
            id=self._id,
        )
        self._raw.clear()
        self._data = []
        self._event = None
        self._id = None
        return event
