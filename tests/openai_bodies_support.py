"""OpenAI's request bodies for the cost-fields property
(tests/gateway/test_cost_fields_property.py): chat, completions, embeddings and the Responses
API, mixing every cost-bearing field of each (limits and conflicting limit pairs, n and best_of,
completions batches of strings and token lists, images, audio and files, service tiers,
reasoning, function and hosted tools, stored prompts), one in four with one field set to
something odd (cost_fields_support.spoiled)."""

from __future__ import annotations

from typing import Any

from cost_fields_support import (
    LONG_MEDIA,
    LONG_TEXT,
    PNG,
    WAV,
    good_counts,
    good_limits,
    limits,
    odd_counts,
    odd_limits,
    optional,
    spoiled,
    words,
)
from hypothesis import strategies as st

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
        limits(("max_tokens", "max_completion_tokens")),
        optional(
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
chat_bodies = spoiled(
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
completion_bodies = spoiled(
    st.builds(
        lambda prompt, limit, extra: (
            {"model": "gpt-3.5-turbo-instruct", "prompt": prompt} | limit | extra
        ),
        prompts,
        limits(("max_tokens",)),
        optional(
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
embedding_bodies = spoiled(
    st.builds(
        lambda given, extra: {"model": "text-embedding-3-small", "input": given} | extra,
        prompts,
        optional(dimensions=st.just(256), encoding_format=st.just("float")),
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
        limits(("max_output_tokens",)),
        stored,
        with_tools,
        optional(
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
        optional(
            max_output_tokens=good_limits,
            max_tool_calls=st.integers(1, 5),
            stream=st.booleans(),
        ),
    )


responses_bodies = spoiled(
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
