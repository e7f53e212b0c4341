"""What fuzzed clients send (tests/gateway/test_fuzz.py): mostly valid calls that reach the budget
path (varied models, messages, tools, limits, choices, streams, scope headers, idempotency keys),
and a smaller share of malformed bodies and headers.

A call's headers name the tenant as TENANT; the test puts the example's tenant there.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

TENANT = "{tenant}"
CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
PATHS = (CHAT, COMPLETIONS, EMBEDDINGS)


@dataclass(frozen=True)
class Call:
    path: str
    body: bytes
    headers: dict[str, str]
    valid: bool
    """Built to be a call the proxy admits or denies, not refuses."""
    retried: bool = False
    """Sent twice in a row, as a client retries (replayed when it has an idempotency key)."""

    def headers_for(self, tenant: str) -> dict[str, str]:
        return {k: v.replace(TENANT, tenant) for k, v in self.headers.items()}

    @property
    def stream(self) -> bool:
        try:
            body = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return False
        return isinstance(body, dict) and body.get("stream") is True


def dump(value: Any) -> bytes:
    """json, not orjson: big integers and NaN/Infinity go out as written (the latter invalid).
    A `deep` placeholder becomes its nested JSON here, written without recursion (json.dumps
    of 1000 levels would hit Python's recursion limit)."""
    text = json.dumps(value)
    return _DEEP.sub(lambda m: _nested_text(int(m[1])), text).encode()


_DEEP = re.compile(r'"@@deep:(\d+)@@"')


def _nested_text(depth: int) -> str:
    """`depth` levels of alternating objects and arrays around a 1."""
    opens = "".join('{"a": ' if i % 2 == 0 else "[" for i in range(depth))
    closes = "".join("}" if i % 2 == 0 else "]" for i in reversed(range(depth)))
    return opens + "1" + closes


# -- valid calls ----------------------------------------------------------------------------------

# Text as people and agents send it; no lone surrogates, which JSON cannot carry to the proxy.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=60) | st.sampled_from(
    ["hi", "Summarise this ticket in one line.", "naïve café ✓", "日本語のテキスト", "a" * 300]
)
names = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
limits = st.integers(1, 300) | st.integers(300, 4000)

parts = st.lists(
    st.builds(lambda t: {"type": "text", "text": t}, text)
    | st.builds(
        lambda detail: {
            "type": "image_url",
            "image_url": {"url": "https://example.com/cat.png", "detail": detail},
        },
        st.sampled_from(["low", "high", "auto"]),
    ),
    min_size=1,
    max_size=3,
)
tool_call = st.builds(
    lambda i, name, args: {
        "id": f"call_{i}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps({"q": args})},
    },
    st.integers(0, 9),
    names,
    text,
)
message = st.one_of(
    st.fixed_dictionaries({"role": st.just("user"), "content": text | parts}),
    st.fixed_dictionaries({"role": st.just("user"), "content": text}, optional={"name": names}),
    st.fixed_dictionaries({"role": st.just("system"), "content": text}),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": st.none() | text},
        optional={"tool_calls": st.lists(tool_call, min_size=1, max_size=2)},
    ),
    st.fixed_dictionaries(
        {"role": st.just("tool"), "tool_call_id": st.just("call_1"), "content": text}
    ),
)
tool = st.builds(
    lambda name, description: {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    },
    names,
    text,
)
neutral = {
    # Cost-neutral fields: forwarded as they are.
    "temperature": st.floats(0, 2, allow_nan=False),
    "top_p": st.floats(0, 1, allow_nan=False),
    "user": names,
    "seed": st.integers(0, 2**31),
    "stop": st.sampled_from(["\n", ["END", "STOP"]]),
}


def _limit_field(chat: bool) -> st.SearchStrategy[dict[str, int]]:
    """No limit (the plan's default is written), max_tokens, or (chat) max_completion_tokens."""
    fields = ["max_tokens", "max_completion_tokens"] if chat else ["max_tokens"]
    return st.just({}) | st.builds(lambda f, n: {f: n}, st.sampled_from(fields), limits)


def _streaming() -> st.SearchStrategy[dict[str, Any]]:
    options = st.sampled_from([{}, {"include_usage": True}, {"include_usage": False}])
    return st.just({}) | st.builds(
        lambda o: {"stream": True} | ({"stream_options": o} if o else {}), options
    )


chat_bodies = st.builds(
    lambda model, messages, limit, n, stream, extra: {
        "model": model,
        "messages": messages,
        **limit,
        **n,
        **stream,
        **extra,
    },
    # gpt-4.1-mini is priced but not in the plan's models: a degrade rule sends gpt-4o-mini.
    st.sampled_from(
        [
            "gpt-4o-mini",
            "gpt-4o-mini",
            "gpt-4o",
            "o3-mini",
            "gpt-4o-mini-2024-07-18",
            "gpt-4.1-mini",
        ]
    ),
    st.lists(message, min_size=1, max_size=4),
    _limit_field(chat=True),
    st.just({}) | st.builds(lambda n: {"n": n}, st.integers(1, 3)),
    _streaming(),
    st.fixed_dictionaries(
        {},
        optional={
            "tools": st.lists(tool, min_size=1, max_size=2),
            "tool_choice": st.sampled_from(["auto", "none", "required"]),
            "response_format": st.sampled_from(
                [
                    {"type": "text"},
                    {"type": "json_object"},
                    {
                        "type": "json_schema",
                        "json_schema": {"name": "answer", "schema": {"type": "object"}},
                    },
                ]
            ),
            **neutral,
        },
    ),
)

prompts = (
    text
    | st.lists(text, min_size=1, max_size=3)
    | st.lists(st.integers(0, 100_000), min_size=1, max_size=20)
    | st.lists(st.lists(st.integers(0, 100_000), min_size=1, max_size=5), min_size=1, max_size=3)
)
completion_bodies = st.builds(
    lambda prompt, limit, choices, stream, extra: {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": prompt,
        **limit,
        **(choices if not stream else {k: v for k, v in choices.items() if k != "best_of"}),
        **stream,
        **extra,
    },
    prompts,
    _limit_field(chat=False),
    st.fixed_dictionaries({}, optional={"n": st.integers(1, 3), "best_of": st.integers(1, 3)}).map(
        lambda c: c if c.get("best_of", 9) >= c.get("n", 1) else c | {"best_of": c["n"]}
    ),
    _streaming(),
    st.fixed_dictionaries({}, optional={"suffix": text, **neutral}),
)
embedding_bodies = st.fixed_dictionaries(
    {"model": st.just("text-embedding-3-small"), "input": prompts},
    optional={"encoding_format": st.just("float"), "user": names},
)

scope_headers = st.builds(
    lambda scopes, key: scopes | key,
    st.fixed_dictionaries(
        {"X-Cycles-Tenant": st.just(TENANT)},
        optional={
            "X-Cycles-Workflow": st.sampled_from(["triage", "billing", "TRIAGE"]),
            "X-Cycles-Agent": st.sampled_from(["planner", "coder"]),
            "X-Cycles-Run": st.sampled_from(["r1", "r2", "r3"]),
            "X-Cycles-App": st.sampled_from(["web", "cli"]),
        },
    ),
    st.sampled_from([{}] * 5 + [{"Idempotency-Key": "k1"}, {"Idempotency-Key": "k2"}]),
)
valid_calls = st.one_of(
    st.builds(Call, st.just(CHAT), chat_bodies.map(dump), scope_headers, st.just(True)),
    st.builds(Call, st.just(CHAT), chat_bodies.map(dump), scope_headers, st.just(True)),
    st.builds(
        Call, st.just(COMPLETIONS), completion_bodies.map(dump), scope_headers, st.just(True)
    ),
    st.builds(Call, st.just(EMBEDDINGS), embedding_bodies.map(dump), scope_headers, st.just(True)),
)


# -- malformed calls ------------------------------------------------------------------------------

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


deep = st.integers(1, 1100).map(lambda depth: f"@@deep:{depth}@@")
"""JSON nested up to 1100 levels (orjson reads 1024, writes 255), once `dump` writes it."""
wild = json_values | deep | st.sampled_from(["", "gpt-4o-mini", "mystery", [], {}, [{}]])
counts = st.integers(-3, 5) | st.sampled_from([2**31, 2**52, 2**63 - 1, 10**15]) | wild
odd_messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "system", "assistant", "tool"]) | wild,
            "content": st.text(max_size=40) | st.lists(wild, max_size=3) | wild,
        },
        optional={"name": wild, "tool_call_id": wild, "tool_calls": wild, "function_call": wild},
    )
    | wild,
    max_size=3,
)

VALID = {
    CHAT: {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
    },
    COMPLETIONS: {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "max_tokens": 5},
    EMBEDDINGS: {"model": "text-embedding-3-small", "input": "hi"},
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
            wild | counts | odd_messages | st.lists(deep, min_size=1, max_size=1),
            min_size=1,
            max_size=2,
        ),
    )


bodies = st.one_of(
    wild.map(dump),
    st.binary(max_size=200),
    st.builds(dump, st.fixed_dictionaries({"model": wild}, optional={"messages": odd_messages})),
    st.builds(lambda raw, i: raw[: i % max(1, len(raw))], chat_bodies.map(dump), st.integers(0)),
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
) | st.sampled_from(["", "a" * 128, "a" * 129, "x ", "é", "-", ".", "a:b", "a/b"])
odd_headers = st.fixed_dictionaries(
    {"X-Cycles-Tenant": st.just(TENANT) | header_values},
    optional={
        name: header_values
        for name in ("X-Cycles-Workflow", "X-Cycles-Agent", "X-Cycles-Run", "X-Cycles-App")
    }
    | {"Idempotency-Key": header_values},
)
paths = st.sampled_from(PATHS)
malformed_calls = st.one_of(
    # Valid headers, a valid body with a field or two gone wrong.
    paths.flatmap(
        lambda p: st.builds(
            Call, st.just(p), near_valid(p).map(dump), scope_headers, st.just(False)
        )
    ),
    # Valid headers, anything as the body.
    st.builds(Call, paths, bodies, scope_headers, st.just(False)),
    # A valid body, odd scope headers.
    paths.flatmap(
        lambda p: st.builds(Call, st.just(p), st.just(dump(VALID[p])), odd_headers, st.just(False))
    ),
)

calls = st.builds(
    lambda call, retried: dataclasses.replace(call, retried=retried),
    st.sampled_from(["valid"] * 4 + ["malformed"]).flatmap(
        lambda kind: valid_calls if kind == "valid" else malformed_calls
    ),
    st.sampled_from([False] * 5 + [True]),
)
"""About four valid calls for each malformed one; one in six sent twice."""
