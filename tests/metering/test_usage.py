"""Actual usage from response bodies and from streams (last report wins; text is counted)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.core.encodings import get_encoding
from proxy.gateway.sse import SSEDecoder
from proxy.metering.pricing import Usage
from proxy.metering.shapes.responses import usage_of_response
from proxy.metering.usage import StreamUsage, usage_from_body

CL100K = get_encoding("cl100k_base")


def tokens(text: str) -> int:
    return len(CL100K.encode_ordinary(text))


def chunk(delta: dict[str, Any] | None = None, *, index: int = 0, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": index, "delta": delta, "finish_reason": None}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": choices, **extra}


def test_chat_body_usage_with_cached_tokens() -> None:
    body = {
        "usage": {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920},
            "completion_tokens_details": {"reasoning_tokens": 192},
        }
    }
    assert usage_from_body(body, "chat") == Usage(2006, 300, 1920)


def test_completions_body_usage_without_details_has_nothing_cached() -> None:
    body = {"usage": {"prompt_tokens": 5, "completion_tokens": 7, "prompt_tokens_details": None}}
    assert usage_from_body(body, "completions") == Usage(5, 7, 0)


def test_embeddings_body_usage_completes_nothing() -> None:
    body = {"usage": {"prompt_tokens": 8, "total_tokens": 8}}
    assert usage_from_body(body, "embeddings") == Usage(8, 0, 0)


def test_cached_tokens_above_prompt_are_clamped() -> None:
    body = {
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 50},
        }
    }
    assert usage_from_body(body, "chat") == Usage(10, 1, 10)


@pytest.mark.parametrize(
    "usage",
    [
        None,
        "lots",
        {},
        {"prompt_tokens": 5},
        {"prompt_tokens": "5", "completion_tokens": 1},
        {"prompt_tokens": -1, "completion_tokens": 1},
        {"prompt_tokens": True, "completion_tokens": 1},
        {"prompt_tokens": 1.5, "completion_tokens": 1},
    ],
)
def test_missing_or_malformed_usage_is_none(usage: Any) -> None:
    assert usage_from_body({"usage": usage}, "chat") is None


def test_a_response_counts_its_mcp_calls_but_not_its_tool_lists_or_approval_requests() -> None:
    """An `mcp` server's calls are hosted tool calls (priced by the model's `tool_calls`); the
    tool list it imports and an approval it asks for are not calls."""
    server = {"server_label": "docs"}
    output = [
        {"type": "mcp_list_tools", "id": "mcpl_1", "tools": [], **server},
        {"type": "mcp_approval_request", "id": "mcpr_1", "name": "a", "arguments": "{}", **server},
        {"type": "mcp_call", "id": "mcp_1", "name": "a", "arguments": "{}", **server},
        {"type": "mcp_call", "id": "mcp_2", "name": "b", "arguments": "{}", **server},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "arguments": "{}"},
    ]
    body = {"output": output, "usage": {"input_tokens": 50, "output_tokens": 5}}
    usage = usage_of_response(body)
    assert usage is not None and usage.tool_calls == (("mcp", 2), ("web_search", 1))


def test_body_without_usage_is_none() -> None:
    assert usage_from_body({"choices": []}, "chat") is None


def test_stream_keeps_the_last_usage_report_not_the_sum() -> None:
    tracker = StreamUsage()
    for completion in (1, 2, 3):
        tracker.feed(
            chunk({"content": "x"}, usage={"prompt_tokens": 9, "completion_tokens": completion})
        )
    assert tracker.usage == Usage(9, 3)


def test_null_usage_on_content_chunks_does_not_erase_a_report() -> None:
    tracker = StreamUsage()
    tracker.feed(chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 4}))
    tracker.feed(chunk({"content": "late"}, usage=None))
    assert tracker.usage == Usage(9, 4)


def test_usage_only_chunk_is_recognised() -> None:
    assert StreamUsage.is_usage_only(
        chunk(None, usage={"prompt_tokens": 1, "completion_tokens": 1})
    )
    assert not StreamUsage.is_usage_only(chunk({"content": "hi"}, usage={"prompt_tokens": 1}))
    assert not StreamUsage.is_usage_only(chunk({"content": "hi"}, usage=None))
    assert not StreamUsage.is_usage_only(chunk(None, usage=None))


def test_streamed_content_is_counted_as_one_text() -> None:
    tracker = StreamUsage()
    for piece in ("hel", "lo wor", "ld"):
        tracker.feed(chunk({"content": piece}))
    assert tracker.counted_completion_tokens(CL100K, 1 << 20) == tokens("hello world")
    assert tracker.events == 3


def test_tool_calls_refusals_and_reasoning_are_counted_per_stream() -> None:
    tracker = StreamUsage()
    tracker.feed(chunk({"tool_calls": [{"index": 0, "function": {"name": "get_weather"}}]}))
    tracker.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}))
    tracker.feed(chunk({"tool_calls": [{"index": 1, "function": {"name": "get_time"}}]}))
    tracker.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}))
    tracker.feed(chunk({"refusal": "I can't"}, index=1))
    tracker.feed(chunk({"reasoning_content": "Think"}, index=1))
    tracker.feed(chunk({"function_call": {"name": "legacy", "arguments": "{}"}}, index=2))
    expected = sum(
        map(
            tokens,
            ["get_weather", '{"city": "Paris"}', "get_time", "I can't", "Think", "legacy", "{}"],
        )
    )
    assert tracker.counted_completion_tokens(CL100K, 1 << 20) == expected


def test_completions_stream_text_is_counted() -> None:
    tracker = StreamUsage()
    tracker.feed({"object": "text_completion", "choices": [{"index": 0, "text": "hello"}]})
    tracker.feed({"object": "text_completion", "choices": [{"index": 0, "text": " world"}]})
    assert tracker.counted_completion_tokens(CL100K, 1 << 20) == 2


def test_counting_past_the_threshold_uses_bytes() -> None:
    tracker = StreamUsage()
    tracker.feed(chunk({"content": "hello world"}))
    assert tracker.counted_completion_tokens(CL100K, 0) == len("hello world")


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"choices": None},
        {"choices": ["x", 1]},
        {"choices": [{"delta": "x"}]},
        {"choices": [{"index": [1], "delta": {"content": 5, "tool_calls": "x"}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": {}, "function": []}, 3]}}]},
    ],
)
def test_odd_events_are_tolerated(event: dict[str, Any]) -> None:
    tracker = StreamUsage()
    tracker.feed(event)
    assert tracker.counted_completion_tokens(CL100K, 1 << 20) == 0
    assert tracker.usage is None


def test_done_is_known_only_after_the_marker() -> None:
    tracker = StreamUsage()
    assert not tracker.done
    tracker.mark_done()
    assert tracker.done


def test_a_decoded_openai_stream_yields_its_final_usage_and_text() -> None:
    events = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "hello"}),
        chunk({"content": " world"}),
        chunk({}),
        chunk(
            None,
            usage={
                "prompt_tokens": 12,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        ),
    ]
    stream = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    decoder, tracker = SSEDecoder(), StreamUsage()
    for sse in [*decoder.feed(stream[:37]), *decoder.feed(stream[37:]), *decoder.flush()]:
        if sse.data == "[DONE]":
            tracker.mark_done()
        elif sse.data is not None:
            tracker.feed(orjson.loads(sse.data))
    assert (tracker.usage, tracker.done) == (Usage(12, 2), True)
    assert tracker.counted_completion_tokens(CL100K, 1 << 20) == 2
