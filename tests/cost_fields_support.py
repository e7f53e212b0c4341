"""Request bodies that mix every cost-bearing field of every budgeted endpoint, for the property
in tests/gateway/test_cost_fields_property.py: valid values, and the odd ones a client may send
(limits of 0, negative or not integers, conflicting limit pairs, counts as strings, tiers and tools
the policy does not price, malformed cache breakpoints), on chat, completions, embeddings, the
Responses API and Anthropic's Messages API. Messages bodies nest blocks (breakpoints, images and
PDFs inside documents, search results, tool and web fetch results) and send Anthropic's client
tools.

The policy is tests/prices_support.py's, where every tool fee declares the input its calls may
add and gpt-4o-mini's images are billed at its own rate, so what the fake provider bills within
those declarations is what the proxy must reserve; an unknown tenant gets its plan, so each
example starts on a fresh ledger. Some OpenAI chat models price cache writes and some do not
(the writes the fake reports on those are charged at the default), and gpt-audio-long's long
prompts carry images and audio and ask for audio back, media priced above its long-context
rates."""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from prices_support import POLICY, PRICES

CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
RESPONSES, MESSAGES = "/v1/responses", "/v1/messages"
ENDPOINTS = {
    CHAT: "chat",
    COMPLETIONS: "completions",
    EMBEDDINGS: "embeddings",
    RESPONSES: "responses",
    MESSAGES: "messages",
}
LONG_BETA = {"anthropic-beta": "context-1m-2025-08-07"}
TOOL_INPUT_TOKENS = 20_000
"""What every priced hosted tool declares one call may add to the input here (the fake's most):
search results as long as a few pages, so that one call's input outweighs what a reservation
holds besides (a tool fee, a container, half an answer), and a reservation without it shows."""
DOCUMENT_TOKENS = 3000
"""The least any model here reserves for a document (the fake bills at most this)."""


def property_policy(tmp_path: Path) -> Path:
    """The prices policy, with unknown tenants on its plan (each example's tenant is new): its
    $50 hold any call here but those asking for a billion tokens, which are 402."""
    text = POLICY.replace("{limit}", "50")
    text = text.replace("identity: header\n", "identity: header\nunknown_tenant: test\n", 1)
    # Every priced hosted tool may add TOOL_INPUT_TOKENS a call (file_search too), and a remote
    # MCP server as much for its tool list; MCP calls bear no fee.
    text = text.replace(
        "      file_search: 0.0025\n",
        "      file_search: {per_call: 0.0025, input_tokens: 600}\n"
        "      mcp: {per_call: 0, input_tokens: 600}\n",
    )
    text = text.replace("input_tokens: 600}", f"input_tokens: {TOOL_INPUT_TOKENS}}}")
    text = text.replace(
        "gpt-4o-mini: {input: 0.15, cached_input: 0.075, output: 0.60,",
        "gpt-4o-mini: {input: 0.15, cached_input: 0.075, output: 0.60, image_token_factor: 33.34,",
    )
    # The fake may report cache writes on any OpenAI call: these models price them, at what
    # prices_support bills them; the others (UNPRICED_WRITES) leave them to the default.
    for model in WRITE_PRICED:
        write = PRICES[model].cache_write
        text = text.replace(f"  {model}: {{input: ", f"  {model}: {{cache_write: {write}, input: ")
        text = text.replace(f"  {model}:\n", f"  {model}:\n    cache_write: {write}\n")
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


WRITE_PRICED = ("gpt-4o", "o1", "gpt-5")
"""The OpenAI chat models the property's policy prices cache writes for."""
UNPRICED_WRITES = ("gpt-4", "gpt-4o-mini", "gpt-audio-long")
"""The OpenAI chat models it does not: writes reported on them are charged at the default."""
LONG_MEDIA = "gpt-audio-long"
"""Long-context prices below its audio and image ones."""


@dataclass(frozen=True)
class Request:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def endpoint(self) -> str:
        return ENDPOINTS[self.path]

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True


def _wav(milliseconds: int) -> str:
    """A silent 16-bit mono 8 kHz WAV file of that length, base64."""
    data = b"\0\0" * (8 * milliseconds)
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    riff += b"data" + struct.pack("<I", len(data)) + data
    return base64.b64encode(b"RIFF" + struct.pack("<I", len(riff)) + riff).decode()


def _png(width: int, height: int) -> str:
    """The first bytes of a PNG of that size, base64: enough for its header to be read."""
    ihdr = struct.pack(">II", width, height) + b"\x08\x06\x00\x00\x00"
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"
    return base64.b64encode(head).decode()


WAV = _wav(400)
PNG = _png(1600, 900)
LONG_TEXT = "Answer as a patient tutor would, one short step at a time. " * 200
"""About 2,400 tokens: past claude-sonnet-4-5's long-context threshold here (2,000)."""

# -- values, valid and odd --------------------------------------------------------------------

words = st.sampled_from(["hi", "Summarise this ticket.", "naïve café ✓", "日本語", "a " * 300])
good_limits = st.integers(1, 60) | st.integers(60, 4000)
odd_limits = st.sampled_from([0, -5, 2.5, "100", True, 10**9])
good_counts = st.integers(1, 4)
odd_counts = st.sampled_from([0, -1, "2", 2.5, True])


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def _limits(fields: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """None, one or (conflicting) several of the endpoint's limit fields."""
    return st.dictionaries(st.sampled_from(fields), good_limits, max_size=len(fields))


def _spoiled(
    bodies: st.SearchStrategy[dict[str, Any]], spoilers: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """`bodies`, one in four with one field set to something odd (a limit of 0, a count that
    is a string, a tier or feature nothing prices, a field no table lists)."""
    spoil = st.sampled_from(sorted(spoilers)).flatmap(
        lambda name: spoilers[name].map(lambda value: {name: value})
    )
    return st.builds(
        lambda body, extra: {**body, **extra},
        bodies,
        st.just({}) | st.just({}) | st.just({}) | spoil,
    )


# -- chat -------------------------------------------------------------------------------------

CHAT_PARTS = [
    {"type": "text", "text": "Look at this."},
    {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}},
]
FILE_PART = {"type": "file", "file": {"file_id": "file-abc123"}}
FUNCTION = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a thing up",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
}
TIERS = {"gpt-5": ["priority", "flex"], "gpt-4o-mini": ["flex"]}
"""The tiers above the standard one each model prices."""


def _chat_messages(model: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Text, images and audio; files where the model prices documents (gpt-5); on LONG_MEDIA,
    after a system prompt past its long-context threshold two times in three."""
    parts = st.lists(
        st.sampled_from(CHAT_PARTS + [FILE_PART] * (model == "gpt-5")), min_size=1, max_size=3
    )
    turns = st.lists(
        st.fixed_dictionaries({"role": st.just("user"), "content": words | parts})
        | st.fixed_dictionaries({"role": st.just("system"), "content": words}),
        min_size=1,
        max_size=3,
    )
    if model != LONG_MEDIA:
        return turns
    long = {"role": "system", "content": LONG_TEXT}
    return st.builds(lambda first, rest: first + rest, st.sampled_from([[], [long], [long]]), turns)


def _voiced(model: str) -> st.SearchStrategy[dict[str, Any]]:
    """LONG_MEDIA asks for audio back three times in four (the fake voices half the answer)."""
    if model != LONG_MEDIA:
        return st.just({})
    asks = {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}
    return st.sampled_from([asks, asks, asks, {}])


def _tiers(model: str) -> st.SearchStrategy[str]:
    return st.sampled_from(["auto", "default", *TIERS.get(model, [])])


def _chat(model: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda messages, voiced, limit, extra: {
            "model": model,
            "messages": messages,
            **voiced,
            **limit,
            **extra,
        },
        _chat_messages(model),
        _voiced(model),
        _limits(("max_tokens", "max_completion_tokens")),
        _optional(
            n=good_counts,
            best_of=good_counts,
            service_tier=_tiers(model),
            tools=st.just([FUNCTION]),
            tool_choice=st.sampled_from(["auto", "required"]),
            stream=st.booleans(),
            stream_options=st.sampled_from([{"include_usage": True}, {"include_usage": False}]),
            reasoning_effort=st.sampled_from(["low", "high"]),
            temperature=st.just(0.2),
        ),
    )


CHAT_MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-5", "gpt-5", "o1", "gpt-4", "gpt-4o-2024-08-06"]
CHAT_MODELS += [LONG_MEDIA] * 3
chat_bodies = _spoiled(
    st.sampled_from(CHAT_MODELS).flatmap(_chat),
    {
        "max_tokens": odd_limits,
        "max_completion_tokens": odd_limits,
        "n": odd_counts,
        "best_of": odd_counts,
        "service_tier": st.sampled_from(["priority", "scale", 5]),
        "modalities": st.just(["text", "audio"]),
        "web_search_options": st.just({}),
        "prediction": st.just({"type": "content", "content": "hi"}),
        "messages": st.just([{"role": "user", "content": [FILE_PART]}]),
        "model": st.just("gpt-5-pro"),
        "mystery": st.just(1),
    },
)

# -- completions and embeddings ---------------------------------------------------------------

prompts = st.one_of(
    words,
    st.lists(words, min_size=1, max_size=5),
    st.lists(st.integers(0, 50_000), min_size=1, max_size=8),
    st.lists(st.lists(st.integers(0, 50_000), min_size=1, max_size=4), min_size=1, max_size=4),
)
completion_bodies = _spoiled(
    st.builds(
        lambda prompt, limit, extra: (
            {"model": "gpt-3.5-turbo-instruct", "prompt": prompt} | limit | extra
        ),
        prompts,
        _limits(("max_tokens",)),
        _optional(
            n=good_counts,
            best_of=good_counts,
            suffix=words,
            stream=st.booleans(),
            echo=st.booleans(),
        ),
    ),
    {
        "max_tokens": odd_limits,
        "max_completion_tokens": good_limits,
        "n": odd_counts,
        "best_of": odd_counts,
        "prompt": st.just([]),
        "service_tier": st.just("priority"),
    },
)
embedding_bodies = _spoiled(
    st.builds(
        lambda given, extra: {"model": "text-embedding-3-small", "input": given} | extra,
        prompts,
        _optional(dimensions=st.just(256), encoding_format=st.just("float")),
    ),
    {"n": st.just(2), "input": st.just([])},
)

# -- the Responses API ------------------------------------------------------------------------

PRICED_HOSTED = [
    {"type": "web_search"},
    {"type": "web_search_preview"},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "code_interpreter", "container": {"type": "auto"}},
    {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.test"},
]
FREE_TOOLS = [
    {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}},
]
RESPONSE_PARTS = [
    {"type": "input_text", "text": "Read this."},
    {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "high"},
]
INPUT_FILE = {"type": "input_file", "file_id": "file-abc123"}


def _responses(model: str) -> st.SearchStrategy[dict[str, Any]]:
    """gpt-5 prices hosted tools, documents and stored prompts; the others none of them."""
    rich = model == "gpt-5"
    parts = st.lists(st.sampled_from(RESPONSE_PARTS + [INPUT_FILE] * rich), min_size=1, max_size=3)
    given = words | st.lists(
        st.fixed_dictionaries({"role": st.just("user"), "content": words | parts}),
        min_size=1,
        max_size=2,
    )
    tools = st.lists(
        st.sampled_from(PRICED_HOSTED * rich + FREE_TOOLS), min_size=1, max_size=3, unique_by=str
    )
    stored = st.sampled_from([{}, {}, {}, {"prompt": {"id": "pmpt_abc"}}] if rich else [{}])
    # gpt-5 sends tools three times in four: its hosted tools are what it bills most for.
    with_tools = st.one_of(st.just({}), *[tools.map(lambda t: {"tools": t})] * (1 + 2 * rich))
    return st.builds(
        lambda given, limit, prompt, tools, extra: (
            {"model": model, "input": given, **limit} | prompt | tools | extra
        ),
        given,
        _limits(("max_output_tokens",)),
        stored,
        with_tools,
        _optional(
            instructions=words,
            max_tool_calls=st.integers(0, 5),
            service_tier=_tiers(model),
            reasoning=st.just({"effort": "low"}),
            text=st.just({"format": {"type": "json_schema", "name": "a", "schema": {}}}),
            stream=st.booleans(),
        ),
    )


def _tool_heavy() -> st.SearchStrategy[dict[str, Any]]:
    """gpt-5 Responses calls that are mostly their hosted tools' calls: a priced hosted tool
    first (the one the fake calls), the tier named (`auto` reserves the dearest, twice what
    most are served at), no stored prompt or file. Their reservations are close enough to the
    bill that the tools' input, left out, would show."""
    tools = st.builds(
        lambda first, rest: [first, *(tool for tool in rest if tool != first)],
        st.sampled_from(PRICED_HOSTED),
        st.lists(st.sampled_from(PRICED_HOSTED + FREE_TOOLS), max_size=2, unique_by=str),
    )
    return st.builds(
        lambda given, tools, tier, extra: (
            {"model": "gpt-5", "input": given, "tools": tools, "service_tier": tier} | extra
        ),
        words,
        tools,
        st.sampled_from(["default", "priority", "flex"]),
        _optional(
            max_output_tokens=good_limits,
            max_tool_calls=st.integers(1, 5),
            stream=st.booleans(),
        ),
    )


responses_bodies = _spoiled(
    st.sampled_from(["gpt-5", "gpt-5", "gpt-4o", "gpt-4o-mini"]).flatmap(_responses)
    | _tool_heavy(),
    {
        "max_output_tokens": odd_limits,
        "max_tool_calls": st.sampled_from([-1, "3"]),
        "tools": st.just([{"type": "image_generation"}]),
        "service_tier": st.just("scale"),
        "previous_response_id": st.just("resp_1"),
        "background": st.just(True),
    },
)

# -- Anthropic's Messages API -----------------------------------------------------------------

FIVE = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
breakpoints = st.sampled_from([FIVE, HOUR])
CLAUDE_BLOCKS = [
    {"type": "text", "text": "Review this."},
    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}},
]
CLAUDE_PDF = {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}}
CLAUDE_TEXT = {"type": "text", "text": "The refund policy: thirty days, receipt required. " * 8}
CLAUDE_URL_IMAGE = {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}
CLAUDE_TEXT_DOCUMENT = {"type": "document", "source": {"type": "text", "data": "Terms. " * 60}}
CLIENT_TOOLS = [
    {"type": "bash_20250124", "name": "bash"},
    {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
    {
        "type": "computer_20250124",
        "name": "computer",
        "display_width_px": 1024,
        "display_height_px": 768,
    },
]
"""Anthropic's client tools, each adding tokens its JSON does not show."""
CLIENT_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search"}


def _cached(block: dict[str, Any], control: dict[str, str] | None) -> dict[str, Any]:
    return block if control is None else {**block, "cache_control": control}


def _nested(rich: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Blocks holding blocks, a breakpoint (or none) deep inside: a document of content blocks
    (text and an image), a search result in a tool result, a web fetch result's document (a
    PDF where the model prices documents)."""
    control = st.none() | breakpoints
    fetched = st.sampled_from(
        [CLAUDE_TEXT_DOCUMENT, CLAUDE_PDF] if rich else [CLAUDE_TEXT_DOCUMENT]
    )
    return st.one_of(
        st.builds(
            lambda c: {
                "type": "document",
                "source": {
                    "type": "content",
                    "content": [_cached(CLAUDE_TEXT, c), CLAUDE_URL_IMAGE],
                },
            },
            control,
        ),
        st.builds(
            lambda c: {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [
                    {
                        "type": "search_result",
                        "source": "https://x.test",
                        "title": "rules",
                        "content": [_cached(CLAUDE_TEXT, c)],
                    }
                ],
            },
            control,
        ),
        st.builds(
            lambda document, c: {
                "type": "web_fetch_tool_result",
                "tool_use_id": "srvtoolu_1",
                "content": {
                    "type": "web_fetch_result",
                    "url": "https://x.test/a",
                    "content": _cached(document, c),
                },
            },
            fetched,
            control,
        ),
    )


def _messages(model: str) -> st.SearchStrategy[dict[str, Any]]:
    """claude-sonnet-4 prices documents and web search; claude-sonnet-4-5 long prompts (with
    the beta); each prices cache writes."""
    rich = model == "claude-sonnet-4"
    flat = st.sampled_from(CLAUDE_BLOCKS + [CLAUDE_PDF] * rich)
    blocks = st.lists(flat | _nested(rich), min_size=1, max_size=3)
    content = words | st.builds(
        lambda blocks, control: [*blocks[:-1], _cached(blocks[-1], control)],
        blocks,
        st.none() | breakpoints,
    )
    texts = st.sampled_from(["Be brief.", LONG_TEXT] if model == "claude-sonnet-4-5" else ["hi"])
    system = texts | st.builds(
        lambda text, control: [_cached({"type": "text", "text": text}, control)],
        texts,
        st.none() | breakpoints,
    )
    client = st.builds(lambda c: _cached(CLIENT_TOOL, c), st.none() | breakpoints)
    search = st.builds(lambda uses: WEB_SEARCH | uses, _optional(max_uses=st.integers(1, 3)))
    defined = st.one_of(client, st.sampled_from(CLIENT_TOOLS), *[search] * rich)
    tools = st.lists(defined, min_size=1, max_size=2, unique_by=str)
    return st.builds(
        lambda content, limit, extra: {
            "model": model,
            "max_tokens": limit,
            "messages": [{"role": "user", "content": content}],
            **extra,
        },
        content,
        good_limits,
        _optional(
            system=system,
            tools=tools,
            tool_choice=st.sampled_from([{"type": "auto"}, {"type": "any"}]),
            thinking=st.just({"type": "enabled", "budget_tokens": 1024}),
            cache_control=breakpoints,
            service_tier=st.sampled_from(["auto", "standard_only"]),
            stream=st.booleans(),
        ),
    )


messages_bodies = _spoiled(
    st.sampled_from(["claude-sonnet-4", "claude-sonnet-4-5", "claude-haiku-4"]).flatmap(_messages),
    {
        "max_tokens": odd_limits,
        "model": st.just("gpt-4o"),
        "cache_control": st.sampled_from([{"type": "ephemeral", "ttl": "2h"}, {"type": "x"}]),
        "tools": st.sampled_from(
            [
                [{"type": "web_fetch_20250910", "name": "web_fetch"}],
                [{"type": "bash_20990101", "name": "bash"}],
                [{"type": "memory_20250818", "name": "memory"}],
            ]
        ),
        "messages": st.just([{"role": "user", "content": [CLAUDE_PDF]}]),
        "service_tier": st.just("priority"),
        "speed": st.just("fast"),
    },
)


def _with_beta(body: dict[str, Any]) -> st.SearchStrategy[Request]:
    """A Messages request, with the long-context beta half the time on the model that prices
    it, and now and then on the others (which refuse it)."""
    priced = body.get("model") == "claude-sonnet-4-5"
    betas = st.sampled_from([{}, LONG_BETA] if priced else [{}] * 7 + [LONG_BETA])
    return st.builds(Request, st.just(MESSAGES), st.just(body), betas)


requests = st.one_of(
    st.builds(Request, st.just(CHAT), chat_bodies, st.just({})),
    st.builds(Request, st.just(COMPLETIONS), completion_bodies, st.just({})),
    st.builds(Request, st.just(EMBEDDINGS), embedding_bodies, st.just({})),
    st.builds(Request, st.just(RESPONSES), responses_bodies, st.just({})),
    messages_bodies.flatmap(_with_beta),
    messages_bodies.flatmap(_with_beta),
)
"""Every endpoint, Anthropic's twice (it has the most cost-bearing fields)."""

provider_moods = st.fixed_dictionaries(
    {
        "hosted_tool_calls": st.sampled_from([0, 2, 9, 9]),
        "tool_input_tokens": st.sampled_from([0, TOOL_INPUT_TOKENS, TOOL_INPUT_TOKENS]),
        "document_tokens": st.sampled_from([0, 1000, DOCUMENT_TOKENS]),
        "service_tier": st.sampled_from(["default", "priority", "flex"]),
        "cached_tokens": st.sampled_from([0, 0, 7]),
        "completion_fraction": st.sampled_from([1.0, 1.0, 0.5]),
        "send_usage": st.sampled_from([True, True, False]),
        "send_done": st.sampled_from([True, True, False]),
        "chat_best_of": st.booleans(),
        "cache_ttl_split": st.sampled_from([True, True, False]),
        "cache_split_zeroed": st.sampled_from([False, False, True]),
        "cache_writes_late": st.sampled_from([False, False, True]),
        "openai_cache_write_tokens": st.sampled_from([0, 0, 40, 10**6]),
    }
)
"""How the fake provider bills for one example, always within what the policy declares."""
