"""What a fuzzed upstream answers (tests/gateway/test_fuzz.py), and what each answer must be
charged.

Most answers are built from parts whose meaning is known by construction: a status; a whole
JSON body with a well-formed usage report, a malformed one or none; or SSE events (text deltas
of a known number of tokens, usage reports good and bad, nulls, comments, non-JSON data,
`[DONE]`) framed with LF or CRLF, cut into chunks anywhere, sometimes ending in a reset. For
those the expected charge is exact (`expected_charge`), from DESIGN.md's rules:

- an error status: released, nothing charged;
- a whole answer: its usage report; without one (or when the body is lost), the reservation;
- a stream: its last good usage report, its completion raised to the counted text if that is
  more; without a report, the counted text; either way at least the reservation when the
  stream did not finish (a reset, or neither `[DONE]` nor a clean end right after a good
  usage-only chunk); a stream with no JSON event at all is charged its reservation (the
  provider answered 200, and may bill).

The rest is raw garbage (bytes, cut JSON, arbitrary JSON events): only robustness is checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from fuzz_requests import dump, wild
from fuzz_support import MAX_AMOUNT, Watched, cost
from hypothesis import strategies as st

MODEL = "gpt-4o-mini"
WORD = " hello"
"""One token in o200k_base, gpt-4o-mini's encoding; so is each repeat of it."""


@dataclass(frozen=True)
class Script:
    """One canned upstream answer: status, content type, the body in chunks, and whether the
    connection is reset after the last chunk instead of ending the body."""

    status: int = 200
    content_type: str = "application/json"
    chunks: tuple[bytes, ...] = ()
    reset: bool = False


@dataclass(frozen=True)
class Shows:
    """What a stream shows the proxy, known by construction."""

    json_events: int = 0
    """Events whose data is a JSON object (what counts as output)."""
    usage: tuple[int, int, int] | None = None
    """The last good usage report: prompt, completion, cached tokens."""
    words: int = 0
    """Tokens of streamed text (choices' content, text, tool-call arguments)."""
    done: bool = False
    final: bool = False
    """The last JSON event was a good usage-only report (OpenAI's include_usage chunk)."""


@dataclass(frozen=True)
class Garbage:
    script: Script
    stream: bool
    """The client asked for a stream (with include_usage)."""
    path: str
    max_tokens: int
    kind: str
    """For the outcome report."""
    whole: Any = None
    """A whole answer's body as built: a dict, or None when it is not a JSON object."""
    shows: Shows | None = None
    """What the answer shows read as a stream (a built whole body shows nothing); None for raw
    garbage, whose meaning is not known."""

    def request_body(self) -> bytes:
        body: dict[str, Any] = {"model": MODEL, "max_tokens": self.max_tokens}
        if self.path == "/v1/chat/completions":
            body["messages"] = [{"role": "user", "content": "hi"}]
        else:
            body["prompt"] = "hi"
        if self.stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return json.dumps(body).encode()

    @property
    def relayed_as_stream(self) -> bool:
        """The proxy reads the answer as SSE: the client asked for a stream and the content
        type (parameters aside) says event-stream."""
        return self.stream and self.script.content_type.split(";")[0] == "text/event-stream"


def expected_charge(case: Garbage, reserved: int) -> int | None:
    """USD units `case` must be charged, `reserved` being its reservation; None when only
    robustness is checked."""
    if case.script.status >= 400:
        return 0
    if case.shows is None:
        return None
    if case.relayed_as_stream:
        return _stream_charge(case, case.shows, reserved)
    usage = None if case.script.reset else _good_usage(case.whole)
    return reserved if usage is None else _usage_charge(usage, 0)


def _stream_charge(case: Garbage, shows: Shows, reserved: int) -> int:
    if shows.json_events == 0:
        return reserved
    complete = (shows.done or shows.final) and not case.script.reset
    if shows.usage is not None:
        # A report is the charge of a finished stream; of a cut one only a floor under the
        # reservation (a running report, as vLLM sends, says nothing of what came after).
        charged = _usage_charge(shows.usage, shows.words)
        return charged if complete else max(charged, reserved)
    # No report: the counted text at the prompt's estimate, which is the reservation less its
    # completion part (gpt-4o-mini's prices are whole units a token, so this is exact).
    counted = reserved - cost(MODEL, 0, case.max_tokens) + cost(MODEL, 0, shows.words)
    return counted if complete else max(counted, reserved)


def _usage_charge(usage: tuple[int, int, int], words: int) -> int:
    prompt, completion, cached = usage
    return min(cost(MODEL, prompt, max(completion, words), min(cached, prompt)), MAX_AMOUNT - 1)


def _good_usage(body: Any) -> tuple[int, int, int] | None:
    """The usage a built whole body reports, if it was built with a good one."""
    if not isinstance(body, dict):
        return None
    return GOOD.get(json.dumps(body.get("usage"), sort_keys=True))


GOOD: dict[str, tuple[int, int, int]] = {}
"""Good usage reports as built (their JSON) → their counts; anything else is a bad one."""


# -- usage reports ---------------------------------------------------------------------------------

tokens = st.integers(0, 5000) | st.integers(0, 12) | st.sampled_from([0, 1, 10**9, 2**53])
"""Counts of every size; small ones often, so streamed text can outnumber a report."""


def _good(prompt: int, completion: int, cached: int | None) -> dict[str, Any]:
    report: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        report["prompt_tokens_details"] = {"cached_tokens": cached}
    GOOD[json.dumps(report, sort_keys=True)] = (prompt, completion, cached or 0)
    return report


good_usage = st.builds(_good, tokens, tokens, st.none() | st.integers(0, 6000))
bad_usage = st.one_of(
    st.none(),
    st.sampled_from([[], "12", 12, True]),
    st.builds(
        lambda key, value: {"prompt_tokens": 3, "completion_tokens": 4} | {key: value},
        st.sampled_from(["prompt_tokens", "completion_tokens"]),
        st.sampled_from([-1, 1.5, "4", None, True, [], {}]),
    ),
    st.fixed_dictionaries({}, optional={"prompt_tokens": tokens, "total_tokens": tokens}),
)


# -- whole answers --------------------------------------------------------------------------------


_plain_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
plain_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _plain_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_plain_text, inner, max_size=4),
    max_leaves=12,
)
"""JSON any parser reads: no NaN, no integers past 64 bits, no lone surrogates."""


def _whole(usage: Any, extra: dict[str, Any]) -> dict[str, Any]:
    body = {"object": "chat.completion", "choices": [{"index": 0, "text": WORD * 3}], **extra}
    if usage is not ...:
        body["usage"] = usage
    return body


whole_bodies = st.builds(
    _whole,
    good_usage | good_usage | bad_usage | st.just(...),
    st.dictionaries(st.sampled_from(["id", "model", "note", "x"]), plain_json, max_size=2),
)


# -- streams --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    data: bytes
    shows: Shows = field(default_factory=Shows)


def _json_event(obj: Any, shows: Shows) -> Event:
    return Event(json.dumps(obj).encode(), shows)


def _text_event(index: int, words: int, shape: str, usage: Any) -> Event:
    text = WORD * words
    choice: dict[str, Any] = {"index": index}
    if shape == "content":
        choice["delta"] = {"content": text}
    elif shape == "text":
        choice["text"] = text
    else:
        choice["delta"] = {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}
    obj = {"choices": [choice], "usage": usage}
    return _json_event(obj, Shows(1, _good_usage({"usage": usage}), words))


text_events = st.builds(
    _text_event,
    st.integers(0, 1),
    st.integers(0, 6),
    st.sampled_from(["content", "text", "tool_call"]),
    st.none() | bad_usage | good_usage,
)


def _usage_event(usage: Any) -> Event:
    report = _good_usage({"usage": usage})
    return _json_event({"choices": [], "usage": usage}, Shows(1, report, final=report is not None))


usage_events = st.builds(_usage_event, good_usage | bad_usage)
DONE = Event(b"[DONE]", Shows(done=True))
quiet_events = st.sampled_from(
    [
        DONE,
        Event(b"not json"),
        Event(b'"mystery"'),
        Event(b"[1, 2]"),
        Event(b"{}", Shows(1)),
        Event(b'{"choices": null}', Shows(1)),
    ]
)
events = st.one_of(text_events, text_events, usage_events, quiet_events)


def _frame(event: Event, style: str) -> bytes:
    """One SSE event: a data line, sometimes with an event name, id or comment before it, and a
    blank line after; LF or CRLF."""
    prefix = {"plain": b"", "named": b"event: message\n", "commented": b": note\nid: 7\n"}
    block = prefix.get(style, b"") + b"data: " + event.data + b"\n\n"
    return block.replace(b"\n", b"\r\n") if style == "crlf" else block


def _stream(
    parts: list[tuple[Event, str]], done: bool, cuts: list[int], keep_alive: bool
) -> tuple[Script, Shows]:
    data = b": keep-alive\n\n" if keep_alive else b""
    shows = Shows()
    if done:
        parts = [*parts, (DONE, "plain")]
    for event, style in parts:
        data += _frame(event, style)
        shows = Shows(
            shows.json_events + event.shows.json_events,
            event.shows.usage if event.shows.usage is not None else shows.usage,
            shows.words + event.shows.words,
            shows.done or event.shows.done,
            event.shows.final if event.shows.json_events else shows.final,
        )
    return Script(content_type="text/event-stream", chunks=_split(data, cuts)), shows


def _split(data: bytes, cuts: list[int]) -> tuple[bytes, ...]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return tuple(data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True))


cuts = st.lists(st.integers(0, 10_000), max_size=6)
frames = st.sampled_from(["plain", "plain", "named", "commented", "crlf"])
built_streams = st.builds(
    _stream,
    st.lists(st.tuples(events, frames), max_size=8),
    st.booleans(),
    cuts,
    st.booleans(),
)


# -- raw garbage ----------------------------------------------------------------------------------

raw_events = st.one_of(
    wild.map(lambda v: b"data: " + dump(v) + b"\n\n"),
    st.binary(max_size=40).map(lambda b: b"data: " + b + b"\n\n"),
    st.binary(max_size=60),
    st.sampled_from(
        [b"\r\n", b"\r", b"event: error\ndata: {}\n\n", b'data: {"choices": [', b"id: \x00\n"]
    ),
)
raw_streams = st.builds(
    lambda evs, cut: Script(content_type="text/event-stream", chunks=_split(b"".join(evs), cut)),
    st.lists(raw_events, max_size=8),
    cuts,
)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    wild.map(dump),
    st.builds(
        lambda usage, i: json.dumps({"usage": usage}).encode()[:i], good_usage, st.integers(0, 80)
    ),
)


# -- cases ----------------------------------------------------------------------------------------

statuses = st.sampled_from([200, 200, 200, 200, 200, 201, 400, 429, 500, 503])
paths = st.sampled_from(["/v1/chat/completions", "/v1/completions"])
limits = st.integers(1, 200)
content_types = st.sampled_from(
    [
        "text/event-stream",
        "text/event-stream",
        "text/event-stream; charset=utf-8",
        "application/json",
    ]
)


def _built_stream(
    built: tuple[Script, Shows], status: int, ctype: str, reset: bool, path: str, limit: int
) -> Garbage:
    script, shows = built
    script = Script(status, ctype, script.chunks, reset)
    return Garbage(script, True, path, limit, f"stream{' reset' if reset else ''}", shows=shows)


def _built_whole(
    body: dict[str, Any],
    cut: list[int],
    status: int,
    ctype: str,
    reset: bool,
    stream: bool,
    path: str,
    limit: int,
) -> Garbage:
    script = Script(status, ctype, _split(dump(body), cut), reset)
    kind = f"whole{' reset' if reset else ''}"
    return Garbage(script, stream, path, limit, kind, whole=body, shows=Shows())


resets = st.sampled_from([False, False, True])
stream_cases = st.builds(
    _built_stream, built_streams, statuses, content_types, resets, paths, limits
)
whole_cases = st.builds(
    _built_whole,
    whole_bodies,
    cuts,
    statuses,
    st.sampled_from(["application/json", "application/json", "text/plain", "text/event-stream"]),
    resets,
    st.booleans(),
    paths,
    limits,
)
raw_cases = st.builds(
    lambda script, status, path, limit: Garbage(
        Script(status, script.content_type, script.chunks), True, path, limit, "raw stream"
    ),
    raw_streams,
    statuses,
    paths,
    limits,
) | st.builds(
    lambda body, status, stream, path, limit: Garbage(
        Script(status, "application/json", (body,)), stream, path, limit, "raw body"
    ),
    raw_bodies,
    statuses,
    st.booleans(),
    paths,
    limits,
)
FAMILIES = {"stream": stream_cases, "whole": whole_cases, "raw": raw_cases}
garbage = st.sampled_from(["stream", "stream", "stream", "whole", "whole", "raw"]).flatmap(
    FAMILIES.__getitem__
)
"""Half built streams, a third built whole answers, a sixth raw garbage."""


class ScriptedUpstream(Watched):
    """Records every chat and completions call like FakeUpstream, then answers `script`,
    whatever was asked."""

    script = Script()

    async def _generate(
        self, request: web.Request, endpoint: str, body: dict[str, Any] | None = None
    ) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.headers), {}))
        script = self.script
        response = web.StreamResponse(
            status=script.status, headers={"Content-Type": script.content_type}
        )
        try:
            await response.prepare(request)
            for chunk in script.chunks:
                await response.write(chunk)
            if script.reset and request.transport is not None:
                request.transport.close()
                return response
            await response.write_eof()
        except ConnectionError:
            pass
        return response
