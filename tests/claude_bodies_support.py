"""Anthropic's Messages bodies for the cost-fields property
(tests/gateway/test_cost_fields_property.py): blocks that nest blocks (breakpoints, images and
PDFs inside documents, search results, tool and web fetch results), system prompts, server and
Anthropic's client tools, thinking, cache breakpoints and long prompts, one in four with one
field set to something odd (cost_fields_support.spoiled); `with_beta` sends them with or
without the long-context beta."""

from __future__ import annotations

from typing import Any

from cost_fields_support import (
    LONG_BETA,
    LONG_TEXT,
    MESSAGES,
    PNG,
    Request,
    good_limits,
    odd_limits,
    optional,
    spoiled,
    words,
)
from hypothesis import strategies as st

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
    search = st.builds(lambda uses: WEB_SEARCH | uses, optional(max_uses=st.integers(1, 3)))
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
        optional(
            system=system,
            tools=tools,
            tool_choice=st.sampled_from([{"type": "auto"}, {"type": "any"}]),
            thinking=st.just({"type": "enabled", "budget_tokens": 1024}),
            cache_control=breakpoints,
            service_tier=st.sampled_from(["auto", "standard_only"]),
            stream=st.booleans(),
        ),
    )


messages_bodies = spoiled(
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


def with_beta(body: dict[str, Any]) -> st.SearchStrategy[Request]:
    """A Messages request, with the long-context beta half the time on the model that prices
    it, and now and then on the others (which refuse it)."""
    priced = body.get("model") == "claude-sonnet-4-5"
    betas = st.sampled_from([{}, LONG_BETA] if priced else [{}] * 7 + [LONG_BETA])
    return st.builds(Request, st.just(MESSAGES), st.just(body), betas)
