"""Fuzzing (hypothesis): malformed bodies and headers from clients, garbage from the upstream.

Whatever arrives, the proxy's own code never answers 500 and no exception escapes a handler; a
refused request (4xx) reaches nothing upstream and leaves the ledger as it was; whatever the
upstream sends, every reservation is settled (nothing stays reserved) and never below the
usage a well-formed report in the answer showed.

One stack per test function, not per example: each test runs its own event loop and drives
hypothesis synchronously inside it. Deterministic by default (derandomize); a soak run:

    CYCLES_FUZZ_EXAMPLES=5000 python -m pytest -q tests/test_fuzz.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import cost, policy

from proxy.fake_upstream import FakeUpstream
from proxy.ledger.base import BalanceRow
from proxy.local import Stack, local_stack

EXAMPLES = int(os.environ.get("CYCLES_FUZZ_EXAMPLES", "0"))
"""0: the quick CI run; otherwise examples per test (a soak run)."""


def fuzz_settings(quick: int) -> settings:
    return settings(
        max_examples=EXAMPLES or quick,
        deadline=None,
        derandomize=not EXAMPLES,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
TENANTS = ("alpha", "gamma")  # gamma is in shadow mode: over-budget calls still go upstream.
T = TypeVar("T")


# -- a provider that says what it is told ---------------------------------------------------------


@dataclass
class Script:
    """One canned upstream answer: status, content type, and the body in chunks."""

    status: int = 200
    content_type: str = "application/json"
    chunks: list[bytes] = field(default_factory=list)
    stream: bool = False


def ok_answer(stream: bool) -> Script:
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    if not stream:
        body = {"object": "chat.completion", "choices": [], "usage": usage}
        return Script(chunks=[orjson.dumps(body)])
    chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}}], "usage": None}
    final = {"choices": [], "usage": usage}
    events = [b"data: " + orjson.dumps(chunk) + b"\n\n", b"data: " + orjson.dumps(final) + b"\n\n"]
    return Script(content_type="text/event-stream", chunks=[*events, b"data: [DONE]\n\n"])


class ScriptedUpstream(FakeUpstream):
    """Records every budgeted call like FakeUpstream, then answers `script` (or a small valid
    answer), whatever was asked: fuzzed requests must not make the provider misbehave."""

    script: Script | None = None

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {"unparsed": raw.decode("utf-8", "replace")}
        self.requests.append((request.path, dict(request.headers), body))
        stream = isinstance(body, dict) and body.get("stream") is True
        script = self.script or ok_answer(stream)
        response = web.StreamResponse(
            status=script.status, headers={"Content-Type": script.content_type}
        )
        try:
            await response.prepare(request)
            for chunk in script.chunks:
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    async def _generate(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        return await self._answer(request)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request)


# -- running hypothesis inside one stack ----------------------------------------------------------


class Unhandled(logging.Handler):
    """Collects what the errors middleware logs as an unhandled exception."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def unhandled() -> Iterator[Unhandled]:
    handler = Unhandled()
    logger = logging.getLogger("proxy.app")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@dataclass
class Driver:
    runner: asyncio.Runner
    stack: Stack
    fake: ScriptedUpstream
    session: aiohttp.ClientSession

    def run(self, work: Awaitable[T]) -> T:
        return self.runner.run(_wrap(work))


async def _wrap(work: Awaitable[T]) -> T:
    return await work


def drive(tmp_path: Path, check: Callable[[Driver], None]) -> None:
    """Start the stack once on a private loop, hand `check` a driver, and tear down."""
    pol = policy(tmp_path, "tenant: {limit: 1000000, period: month}")
    fake = ScriptedUpstream()
    with asyncio.Runner() as runner:
        stack_cm = local_stack(pol, fake=fake, sweep_every=None)
        stack = runner.run(stack_cm.__aenter__())
        session = runner.run(_session())
        try:
            check(Driver(runner, stack, fake, session))
        finally:
            runner.run(session.close())
            runner.run(stack_cm.__aexit__(None, None, None))


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))


async def snapshot(stack: Stack) -> list[BalanceRow]:
    rows: list[BalanceRow] = []
    for tenant in TENANTS:
        rows += await stack.ledger.balances(tenant)
    return sorted(rows, key=lambda r: (r.level, r.value, r.unit, r.period_id))


def assert_openai_error(status: int, body: bytes) -> None:
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "code", "param"}, error
    assert isinstance(error["message"], str) and error["message"]


def assert_not_ours(status: int, body: bytes, unhandled: Unhandled) -> None:
    """No 500 from the proxy's own code: nothing logged as unhandled, no server_error body."""
    assert not unhandled.records, [r.getMessage() for r in unhandled.records]
    if status >= 500:
        assert b"The proxy failed to handle this request" not in body, body


# -- requests ------------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -1, 2**52, 2**53 + 1, 2**63, 2**64, 10**30])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


deep = st.integers(1, 1100).map(nested)
wild = json_values | deep | st.sampled_from(["", "gpt-4o-mini", "mystery", [], {}, [{}]])

content_parts = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["text", "image_url", "input_audio", "file", "refusal"]) | wild,
            "text": st.text(max_size=30) | wild,
            "image_url": st.fixed_dictionaries(
                {}, optional={"url": st.text(max_size=10) | wild, "detail": wild}
            )
            | wild,
            "input_audio": st.fixed_dictionaries({}, optional={"data": wild}) | wild,
            "file": wild,
        },
    )
    | wild,
    max_size=3,
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "id": wild,
            "type": wild,
            "function": st.fixed_dictionaries(
                {}, optional={"name": st.text(max_size=10) | wild, "arguments": wild}
            )
            | wild,
        },
    )
    | wild,
    max_size=2,
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "system", "assistant", "tool"]) | wild,
            "content": st.text(max_size=40) | content_parts | wild,
        },
        optional={
            "name": st.text(max_size=10) | wild,
            "tool_call_id": wild,
            "tool_calls": tool_calls,
            "function_call": wild,
        },
    )
    | wild,
    max_size=3,
)
counts = st.integers(-3, 5) | st.sampled_from([2**31, 2**52, 2**63 - 1, 10**15]) | wild
body_fields = st.fixed_dictionaries(
    {"model": st.sampled_from(["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]) | wild},
    optional={
        "messages": messages | wild,
        "prompt": st.text(max_size=20) | st.lists(st.integers(-1, 5) | wild, max_size=3) | wild,
        "input": st.text(max_size=20) | st.lists(st.text(max_size=5) | wild, max_size=3) | wild,
        "suffix": wild,
        "max_tokens": counts,
        "max_completion_tokens": counts,
        "n": counts,
        "best_of": counts,
        "stream": st.booleans() | wild,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": wild}) | wild,
        "tools": st.lists(json_values, max_size=2) | wild,
        "functions": wild,
        "tool_choice": wild,
        "function_call": wild,
        "response_format": st.fixed_dictionaries(
            {"type": st.sampled_from(["json_schema", "text"]) | wild}, optional={"schema": wild}
        )
        | wild,
        "temperature": wild,
    },
)


VALID = {
    "/v1/chat/completions": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
    },
    "/v1/completions": {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "max_tokens": 5},
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": "hi"},
}
FIELDS = (
    "model",
    "messages",
    "prompt",
    "input",
    "suffix",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "best_of",
    "stream",
    "stream_options",
    "tools",
    "functions",
    "tool_choice",
    "function_call",
    "response_format",
    "temperature",
    "metadata",
)


def near_valid(path: str) -> st.SearchStrategy[dict[str, Any]]:
    """The endpoint's valid body with one or two fields replaced by something odd."""
    return st.builds(
        lambda changes: {**VALID[path], **changes},
        st.dictionaries(
            st.sampled_from(FIELDS),
            wild | counts | messages | st.lists(deep, min_size=1, max_size=1),
            min_size=1,
            max_size=2,
        ),
    )


def _dump(value: Any) -> bytes:
    """json, not orjson: big integers and NaN/Infinity go out as written (the latter invalid)."""
    return json.dumps(value).encode()


bodies = st.one_of(
    body_fields.map(_dump),
    wild.map(_dump),
    st.binary(max_size=200),
    body_fields.map(_dump).flatmap(
        lambda raw: st.integers(0, max(0, len(raw) - 1)).map(lambda i: raw[:i])
    ),
    st.sampled_from(
        [
            b"\xff\xfe{}",
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff"}]}',
        ]
    ),
)
# What HTTP lets through in a header value: visible ASCII, space, tab and obs-text.
header_values = st.text(
    st.characters(codec="latin-1", exclude_characters="\r\n\x00\x7f", min_codepoint=9).filter(
        lambda c: c == "\t" or ord(c) >= 0x20
    ),
    max_size=300,
) | st.sampled_from(["alpha", "gamma", "ALPHA", "a" * 128, "a" * 129, "alpha ", "é", "-", "."])
scope_headers = st.fixed_dictionaries(
    {"X-Cycles-Tenant": st.sampled_from(TENANTS) | header_values},
    optional={
        name: header_values | st.sampled_from(["x", "run-1"])
        for name in ("X-Cycles-Workflow", "X-Cycles-Agent", "X-Cycles-Run", "X-Cycles-App")
    }
    | {"Idempotency-Key": header_values},
)


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str]


ALPHA = {"X-Cycles-Tenant": "alpha"}
paths = st.sampled_from(PATHS)
requests = st.one_of(
    # Valid headers, a valid body with a field or two gone wrong.
    paths.flatmap(
        lambda p: st.builds(Request, st.just(p), near_valid(p).map(_dump), st.just(ALPHA))
    ),
    paths.flatmap(
        lambda p: st.builds(Request, st.just(p), near_valid(p).map(_dump), st.just(ALPHA))
    ),
    # Valid headers, anything as the body.
    st.builds(Request, paths, bodies, st.just(ALPHA)),
    # A valid body, odd scope headers.
    paths.flatmap(
        lambda p: st.builds(Request, st.just(p), st.just(_dump(VALID[p])), scope_headers)
    ),
)


async def send(driver: Driver, request: Request) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", **request.headers}
    async with driver.session.post(
        driver.stack.url + request.path, data=request.body, headers=headers
    ) as response:
        return response.status, await response.read()


def test_fuzzed_requests_never_500_and_refusals_change_nothing(
    tmp_path: Path, unhandled: Unhandled
) -> None:
    def check(driver: Driver) -> None:
        @fuzz_settings(quick=500)
        @given(batch=st.lists(requests, min_size=1, max_size=3))
        def one(batch: list[Request]) -> None:
            for request in batch:
                driver.run(_check_request(driver, request, unhandled))

        one()

    drive(tmp_path, check)


async def _check_request(driver: Driver, request: Request, unhandled: Unhandled) -> None:
    before = await snapshot(driver.stack)
    calls = len(driver.fake.requests)
    status, body = await send(driver, request)
    assert_not_ours(status, body, unhandled)
    assert status < 500, (status, body)
    if status >= 400:
        assert_openai_error(status, body)
        assert len(driver.fake.requests) == calls, (status, body)
        assert await snapshot(driver.stack) == before, (status, body)


# -- upstream garbage ----------------------------------------------------------------------------

usage_values = (
    st.fixed_dictionaries(
        {},
        optional={
            "prompt_tokens": counts,
            "completion_tokens": counts,
            "total_tokens": counts,
            "prompt_tokens_details": st.fixed_dictionaries({}, optional={"cached_tokens": counts})
            | wild,
        },
    )
    | wild
)
good_usage = st.builds(
    lambda p, c: {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
    st.integers(0, 5000),
    st.integers(0, 5000),
)


def _json_event(obj: Any) -> bytes:
    return b"data: " + _dump(obj) + b"\n\n"


events = st.one_of(
    st.builds(
        lambda text, usage: _json_event(
            {"choices": [{"index": 0, "delta": {"content": text}}], "usage": usage}
        ),
        st.text(max_size=20),
        st.none() | usage_values,
    ),
    st.builds(
        lambda usage: _json_event({"choices": [], "usage": usage}), usage_values | good_usage
    ),
    st.builds(lambda choices: _json_event({"choices": choices}), wild),
    wild.map(_json_event),
    st.binary(max_size=40).map(lambda b: b"data: " + b + b"\n\n"),
    st.binary(max_size=60),
    st.sampled_from(
        [
            b"data: [DONE]\n\n",
            b": keep-alive\n\n",
            b"\n\n",
            b"\r\n",
            b"\r",
            b"event: error\ndata: {}\n\n",
            b'data: {"choices": [',
            b"data: {}\r\n\r\n",
            b"id: \x00\n",
            b"retry: x\n",
        ]
    ),
)


@dataclass(frozen=True)
class Garbage:
    script: Script
    stream: bool
    endpoint: str


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


streams = st.builds(
    lambda evs, cuts, done, ctype: Script(
        content_type=ctype,
        chunks=_split(b"".join(evs) + (b"data: [DONE]\n\n" if done else b""), cuts),
        stream=True,
    ),
    st.lists(events, max_size=8),
    st.lists(st.integers(0, 10_000), max_size=6),
    st.booleans(),
    st.sampled_from(["text/event-stream", "text/event-stream; charset=utf-8", "application/json"]),
)
whole_bodies = st.one_of(
    st.builds(
        lambda usage, extra: _dump({"object": "chat.completion", "usage": usage, **extra}),
        usage_values | good_usage,
        st.dictionaries(st.text(max_size=5), wild, max_size=2),
    ),
    wild.map(_dump),
    st.binary(max_size=200),
    st.builds(
        lambda usage, i: _dump({"usage": usage})[:i], good_usage | usage_values, st.integers(0, 80)
    ),
)
wholes = st.builds(
    lambda body, cuts, ctype: Script(content_type=ctype, chunks=_split(body, cuts)),
    whole_bodies,
    st.lists(st.integers(0, 10_000), max_size=3),
    st.sampled_from(["application/json", "text/plain", "text/event-stream"]),
)
garbage = st.builds(
    lambda script, status, endpoint: Garbage(
        Script(status, script.content_type, script.chunks, script.stream), script.stream, endpoint
    ),
    streams | wholes,
    st.sampled_from([200, 200, 200, 201, 400, 429, 500, 503]),
    st.sampled_from(["/v1/chat/completions", "/v1/completions"]),
)


def reported_floor(case: Garbage) -> int:
    """USD units the last well-formed usage report in the answer (if any) is worth."""
    data = b"".join(case.script.chunks)
    objects: list[Any] = []
    if case.stream and case.script.content_type.startswith("text/event-stream"):
        for block in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
            if block.startswith(b"data:"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    objects.append(orjson.loads(block[5:]))
    else:
        with contextlib.suppress(orjson.JSONDecodeError):
            objects.append(orjson.loads(data))
    floor = 0
    for obj in objects:
        counts = reported_counts(obj.get("usage")) if isinstance(obj, dict) else None
        if counts is not None and sum(counts) < 10**9:
            floor = cost("gpt-4o-mini", *counts)
    return floor


def reported_counts(usage: Any) -> tuple[int, int] | None:
    """(prompt, completion) of a well-formed OpenAI usage report: both non-negative integers.
    Read here, not with the proxy's parser, so a parser that dropped good reports would show."""
    if not isinstance(usage, dict):
        return None
    counts = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
    if all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        return counts[0], counts[1]
    return None


def test_upstream_garbage_never_500_and_always_settles(
    tmp_path: Path, unhandled: Unhandled
) -> None:
    def check(driver: Driver) -> None:
        @fuzz_settings(quick=300)
        @given(case=garbage)
        def one(case: Garbage) -> None:
            driver.run(_check_garbage(driver, case, unhandled))

        one()

    drive(tmp_path, check)


def _usd_spent(rows: list[BalanceRow]) -> int:
    return sum(r.spent for r in rows if r.level == "tenant" and r.unit == "USD")


async def _check_garbage(driver: Driver, case: Garbage, unhandled: Unhandled) -> None:
    driver.fake.script = case.script
    before = _usd_spent(await snapshot(driver.stack))
    body: dict[str, Any] = {"model": "gpt-4o-mini", "max_tokens": 20}
    if case.endpoint == "/v1/chat/completions":
        body["messages"] = [{"role": "user", "content": "hi"}]
    else:
        body["prompt"] = "hi"
    if case.stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    try:
        request = Request(case.endpoint, orjson.dumps(body), {"X-Cycles-Tenant": "gamma"})
        try:
            status, answer = await send(driver, request)
        except aiohttp.ClientPayloadError:
            # The upstream's body was cut or malformed and the proxy relayed it as it came.
            status, answer = 200, b""
    finally:
        driver.fake.script = None
    assert_not_ours(status, answer, unhandled)
    if status != case.script.status:
        assert status == 502, (status, answer)
        assert_openai_error(status, answer)
    rows = await snapshot(driver.stack)
    assert all(r.reserved == 0 for r in rows), rows
    assert all(r.spent >= 0 for r in rows), rows
    spent = _usd_spent(rows) - before
    if case.script.status < 400:
        assert spent >= reported_floor(case), (spent, reported_floor(case))
    else:
        assert spent == 0, spent
