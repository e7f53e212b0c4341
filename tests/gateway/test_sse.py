"""The SSE decoder: same events however the stream is split, every byte kept for the relay."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from proxy.gateway.sse import SSEDecoder, SSEEvent


def decode(*chunks: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.flush()


def test_one_event() -> None:
    assert decode(b"data: hello\n\n") == [SSEEvent(raw=b"data: hello\n\n", data="hello")]


def test_event_is_returned_as_soon_as_its_blank_line_arrives() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert [e.data for e in decoder.feed(b"\ndata: b")] == ["a"]
    assert [e.data for e in decoder.flush()] == ["b"]


def test_data_lines_are_joined_with_newlines() -> None:
    assert decode(b"data: a\ndata:b\ndata\ndata:  c\n\n")[0].data == "a\nb\n\n c"


def test_event_name_and_id_are_kept_and_reset_per_event() -> None:
    events = decode(b"event: ping\nid: 7\ndata: {}\n\ndata: x\n\n")
    assert [(e.event, e.id, e.data) for e in events] == [("ping", "7", "{}"), (None, None, "x")]


def test_comments_are_not_data_but_keep_their_bytes() -> None:
    events = decode(b": keep-alive\n\n: note\ndata: x\n\n")
    assert [(e.raw, e.data) for e in events] == [
        (b": keep-alive\n\n", None),
        (b": note\ndata: x\n\n", "x"),
    ]


def test_unknown_fields_are_ignored() -> None:
    assert decode(b"retry: 10\nfoo: bar\ndata: x\n\n")[0].data == "x"


def test_crlf_and_cr_line_endings() -> None:
    events = decode(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n")
    assert [(e.raw, e.data) for e in events] == [
        (b"data: a\r\n\r\n", "a"),
        (b"data: b\r\r", "b"),
        (b"data: c\n\n", "c"),
    ]


def test_crlf_split_across_chunks_is_one_line_ending() -> None:
    assert decode(b"data: a\r", b"\n\r", b"\n") == [SSEEvent(raw=b"data: a\r\n\r\n", data="a")]


def test_cr_at_the_end_of_the_stream_ends_the_line() -> None:
    assert decode(b"data: a\r\r") == [SSEEvent(raw=b"data: a\r\r", data="a")]


def test_utf8_split_inside_a_character() -> None:
    raw = "data: héllo ☃\n\n".encode()
    assert decode(raw[:7], raw[7:15], raw[15:]) == decode(raw)
    assert decode(raw[:7], raw[7:])[0].data == "héllo ☃"


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode(b"data: \xff\n\n")[0].data == "\ufffd"


def test_leading_bom_is_ignored() -> None:
    assert decode(b"\xef\xbb\xbfdata: x\n\n")[0].data == "x"


def test_flush_returns_an_unterminated_last_event() -> None:
    assert decode(b'data: {"usage": 1}') == [
        SSEEvent(raw=b'data: {"usage": 1}', data='{"usage": 1}')
    ]


def test_flush_of_an_empty_or_finished_stream_returns_nothing() -> None:
    assert decode() == []
    decoder = SSEDecoder()
    decoder.feed(b"data: x\n\n")
    assert decoder.flush() == []


def test_stray_blank_lines_become_dataless_events() -> None:
    assert decode(b"\n\ndata: x\n\n") == [
        SSEEvent(raw=b"\n", data=None),
        SSEEvent(raw=b"\n", data=None),
        SSEEvent(raw=b"data: x\n\n", data="x"),
    ]


def test_a_long_line_and_many_small_events_come_out_whole() -> None:
    """A 4 MB line in 4 KB chunks on the line-by-line path (the first event), then 100k small
    events. (A quadratic rescan would show as a slow suite; the whole-event path's scanning is
    counted exactly in the test below.)"""
    decoder = SSEDecoder()
    decoder.feed(b"data: ")
    for _ in range(1024):
        decoder.feed(b"x" * 4096)
    assert len(decoder.feed(b"\n\n")[0].raw) == 4096 * 1024 + 8
    assert len(decoder.feed(b"data: {}\n\n" * 100_000)) == 100_000


line_endings = st.sampled_from([b"\n", b"\r", b"\r\n"])
values = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
lines = st.one_of(
    st.tuples(st.sampled_from(["data: ", "data:", "event: ", "id: ", ": ", "retry: "]), values).map(
        lambda pair: (pair[0] + pair[1]).encode()
    ),
    st.just(b"data"),
    st.just(b""),
)
streams = st.lists(st.tuples(lines, line_endings), max_size=25).map(
    lambda pairs: b"".join(line + end for line, end in pairs)
)


@st.composite
def split(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    stream = draw(streams) + draw(st.binary(max_size=8))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    return stream, [stream[a:b] for a, b in itertools.pairwise(bounds)]


@given(split())
def test_any_split_yields_the_same_events_as_the_whole(case: tuple[bytes, list[bytes]]) -> None:
    stream, chunks = case
    assert decode(*chunks) == decode(stream)


@given(split())
def test_every_byte_lands_in_exactly_one_event_in_order(case: tuple[bytes, list[bytes]]) -> None:
    stream, chunks = case
    assert b"".join(event.raw for event in decode(*chunks)) == stream


class LineByLine(SSEDecoder):
    """The decoder with its whole-event fast path turned off."""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return self._feed_lines(chunk)


lf_streams = st.lists(st.tuples(lines, st.just(b"\n")), max_size=25).map(
    lambda pairs: b"".join(line + end for line, end in pairs)
)


@given(lf_streams, st.lists(st.integers(0, 400), max_size=12))
def test_the_fast_path_decodes_as_the_line_by_line_path(stream: bytes, cuts: list[int]) -> None:
    """LF-only streams (what providers send) go through the whole-event path after the first
    chunk; the events must be those the line-by-line path finds."""
    bounds = [0, *sorted(c for c in cuts if c <= len(stream)), len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    fast, slow = SSEDecoder(), LineByLine()
    got = [e for chunk in chunks for e in fast.feed(chunk)] + fast.flush()
    want = [e for chunk in chunks for e in slow.feed(chunk)] + slow.flush()
    assert got == want


class CountingTail(bytearray):
    """The decoder's tail, counting the bytes its searches look at."""

    scanned = 0

    def find(self, *args: Any) -> int:
        start = args[1] if len(args) > 1 else 0
        CountingTail.scanned += len(self) - start
        return super().find(*args)


def test_a_long_event_after_the_first_is_searched_once() -> None:
    """The whole-event path keeps its tail and never searches it again: the bytes searched
    for an event's end stay within the bytes fed, not their square."""
    decoder = SSEDecoder()
    assert len(decoder.feed(b"data: first\n\n")) == 1
    decoder._tail = CountingTail()
    CountingTail.scanned = 0
    decoder.feed(b"data: ")
    for _ in range(1024):
        assert decoder.feed(b"x" * 4096) == []
    [event] = decoder.feed(b"\n\n")
    assert len(event.raw) == 4096 * 1024 + 8 and event.data == "x" * 4096 * 1024
    assert CountingTail.scanned <= 2 * len(event.raw)


def test_a_first_chunk_without_a_bom_takes_the_whole_event_path() -> None:
    """A provider's first chunk often holds most of a short answer: its events are cut whole,
    not line by line (which only a stream beginning with a BOM, or holding a CR, needs)."""
    lines: list[bytes] = []

    class Watched(SSEDecoder):
        def _end_line(self, terminator: bytes, events: list[SSEEvent]) -> None:
            lines.append(terminator)
            super()._end_line(terminator, events)

    events = Watched().feed(b'data: {"a": 1}\n\n' * 19 + b"data: [DONE]\n\n")
    assert [e.data for e in events] == ['{"a": 1}'] * 19 + ["[DONE]"]
    assert lines == []
    assert [e.data for e in Watched().feed(b"\xef\xbb\xbfdata: x\n\n")] == ["x"]
