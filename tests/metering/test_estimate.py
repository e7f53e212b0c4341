"""Estimates: the cookbook's chat formula, media by rule, bounded tokenising, clear 400s."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cookbook_support import COOKBOOK_MESSAGES, COOKBOOK_PROMPT_TOKENS
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.encodings import get_encoding
from proxy.core.errors import BadRequest
from proxy.metering.estimate import (
    TOOLS_OVERHEAD,
    Estimate,
    completion_limit,
    estimate_chat,
    estimate_completions,
    estimate_embeddings,
)
from proxy.metering.images import IMAGE_TOKENS, IMAGE_TOKENS_LOW
from proxy.metering.text_counter import TextCounter

CL100K = get_encoding("cl100k_base")
LIMITS = {"default_max_tokens": 100, "tokenize_max_bytes": 1 << 20}


class RecordingTokenizer:
    """Counts one token per character and remembers what it was asked to tokenise."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode_ordinary(self, text: str) -> list[int]:
        self.seen.append(text)
        return [0] * len(text)


def chat(body: dict[str, Any], enc: Any = CL100K, **limits: int) -> Estimate:
    return estimate_chat(body, enc, **{**LIMITS, **limits})


def user(content: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


def tokens(text: str) -> int:
    return len(CL100K.encode_ordinary(text))


@pytest.mark.parametrize(("encoding", "expected"), COOKBOOK_PROMPT_TOKENS.items())
def test_chat_prompt_matches_cookbook_example(encoding: str, expected: int) -> None:
    estimate = chat({"messages": COOKBOOK_MESSAGES}, get_encoding(encoding))
    assert estimate.prompt_tokens == expected


def test_one_message_costs_overhead_role_content_and_priming() -> None:
    assert chat(user("hello world")).prompt_tokens == 3 + 1 + 2 + 3


def test_special_token_text_in_content_is_counted_as_plain_text() -> None:
    assert chat(user("<|endoftext|>")).prompt_tokens == 3 + 1 + tokens("<|endoftext|>") + 3


def test_text_parts_count_like_string_content() -> None:
    parts = [{"type": "text", "text": "hello"}, {"type": "text", "text": " world"}]
    assert chat(user(parts)).prompt_tokens == chat(user("hello")).prompt_tokens + tokens(" world")


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("low", IMAGE_TOKENS_LOW),
        ("high", IMAGE_TOKENS),
        ("auto", IMAGE_TOKENS),
        (None, IMAGE_TOKENS),
    ],
)
def test_images_are_priced_by_rule(detail: str | None, expected: int) -> None:
    image: dict[str, Any] = {"url": "https://example.com/cat.png"}
    if detail is not None:
        image["detail"] = detail
    estimate = chat(user([{"type": "image_url", "image_url": image}]))
    assert estimate.prompt_tokens == 3 + 1 + expected + 3


def test_base64_image_is_never_tokenised() -> None:
    enc = RecordingTokenizer()
    url = "data:image/png;base64," + "A" * 10_000
    chat(user([{"type": "image_url", "image_url": {"url": url}}]), enc)
    assert all(len(text) < 100 for text in enc.seen)


def test_input_mp3_is_bounded_by_its_base64_length() -> None:
    frame = "//uQZA" + "A" * 550  # an MPEG-1 layer III frame of 417 bytes (128 kbps), silent
    mp3 = frame * 3
    part = {"type": "input_audio", "input_audio": {"data": mp3, "format": "mp3"}}
    assert chat(user([part])).prompt_tokens == 3 + 1 + len(mp3) + 3


def test_base64_data_url_in_text_counts_its_bytes_untokenised() -> None:
    enc = RecordingTokenizer()
    url = "data:application/pdf;base64," + "QUJD" * 50
    assert chat(user(url), enc).prompt_tokens == 3 + len("user") + len(url) + 3
    assert url not in enc.seen


def test_text_over_the_threshold_counts_bytes_and_is_not_tokenised() -> None:
    enc = RecordingTokenizer()
    text = "é" * 600
    estimate = chat(user(text), enc, tokenize_max_bytes=1000)
    assert estimate.prompt_tokens == 3 + len("user") + 1200 + 3
    assert text not in enc.seen


def test_threshold_bounds_all_text_of_a_request_together() -> None:
    enc = RecordingTokenizer()
    counter = TextCounter(enc, 10)
    assert [counter.count("abcdef"), counter.count("ghijkl"), counter.count("mno")] == [6, 6, 3]
    assert enc.seen == ["abcdef", "mno"]


@given(st.text(max_size=300))
def test_byte_count_bounds_the_token_count(text: str) -> None:
    assert TextCounter(CL100K, 0).count(text) >= TextCounter(CL100K, 1 << 20).count(text)


def test_name_adds_one_token_plus_its_own() -> None:
    named = {"messages": [{"role": "user", "name": "bob", "content": "hi"}]}
    assert chat(named).prompt_tokens == chat(user("hi")).prompt_tokens + 1 + tokens("bob")


def test_tool_calls_count_function_names_and_arguments() -> None:
    arguments = '{"city": "Paris", "unit": "celsius"}'
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }
    body = {
        "messages": [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
        ]
    }
    expected = (
        3
        + tokens("assistant")
        + 3
        + tokens("get_weather")
        + tokens(arguments)
        + 3
        + tokens("tool")
        + tokens("call_1")
        + tokens("21C")
        + 3
    )
    assert chat(body).prompt_tokens == expected


def test_legacy_function_call_message_counts_like_a_tool_call() -> None:
    function = {"name": "f", "arguments": "{}"}
    legacy = {"messages": [{"role": "assistant", "function_call": function}]}
    modern = {"messages": [{"role": "assistant", "tool_calls": [{"function": function}]}]}
    assert chat(legacy) == chat(modern)


def test_tool_definitions_count_their_json_plus_overhead() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    base = chat(user("hi")).prompt_tokens
    expected = base + TOOLS_OVERHEAD + tokens(orjson.dumps(tools).decode())
    assert chat({**user("hi"), "tools": tools}).prompt_tokens == expected
    assert chat({**user("hi"), "functions": [tools[0]["function"]]}).prompt_tokens > base


def test_json_schema_response_format_counts_its_json() -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {"type": "object", "properties": {"x": {"type": "integer"}}},
        },
    }
    base = chat(user("hi")).prompt_tokens
    with_schema = chat({**user("hi"), "response_format": response_format}).prompt_tokens
    assert with_schema == base + tokens(orjson.dumps(response_format).decode())
    json_object = chat({**user("hi"), "response_format": {"type": "json_object"}}).prompt_tokens
    assert json_object == base


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 100),
        ({"max_tokens": 50}, 50),
        ({"max_completion_tokens": 70, "max_tokens": 50}, 50),
        ({"max_completion_tokens": 50, "max_tokens": 70}, 50),
        ({"max_completion_tokens": None, "max_tokens": 50}, 50),
        ({"max_tokens": 50, "n": 3}, 150),
        ({"n": 2}, 200),
        ({"n": None}, 100),
        ({"max_tokens": 10, "best_of": 20}, 200),
        ({"max_tokens": 10, "n": 2, "best_of": 5}, 50),
    ],
)
def test_chat_completion_is_the_limit_times_n(fields: dict[str, Any], expected: int) -> None:
    """The smaller of two limits; per choice, and `best_of` candidates (vLLM takes it on chat)
    are each generated and billed."""
    assert chat({**user("hi"), **fields}).completion_tokens == expected


@pytest.mark.parametrize(
    ("body", "param", "hint"),
    [
        ({}, "messages", "non-empty array"),
        ({"messages": "hello"}, "messages", "non-empty array"),
        ({"messages": []}, "messages", "non-empty array"),
        ({"messages": ["hello"]}, "messages[0]", "must be an object"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role", "must be a string, got null"),
        (user(42), "messages[0].content", "string or an array of content parts"),
        (user([{"text": "hi"}]), "messages[0].content[0]", "string 'type'"),
        (
            user([{"type": "text", "text": 7}]),
            "messages[0].content[0].text",
            "must be a string, got 7",
        ),
        (
            user([{"type": "image_url", "image_url": {}}]),
            "messages[0].content[0].image_url",
            "string 'url'",
        ),
        (
            user([{"type": "image_url", "image_url": {"url": "u", "detail": "original"}}]),
            "messages[0].content[0].image_url.detail",
            "Use low, high or auto",
        ),
        (
            user([{"type": "input_audio", "input_audio": {}}]),
            "messages[0].content[0].input_audio.data",
            "must be a string",
        ),
        ({"messages": [{"role": "user", "content": "a", "name": 1}]}, "messages[0].name", "string"),
        (
            {"messages": [{"role": "assistant", "tool_calls": {}}]},
            "messages[0].tool_calls",
            "array",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
            "an object",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{}]}]},
            "messages[0].tool_calls[0].function",
            "'name' and 'arguments'",
        ),
        ({**user("hi"), "tools": {"type": "function"}}, "tools", "array"),
        ({**user("hi"), "max_tokens": -1}, "max_tokens", "at least 1, got -1"),
        ({**user("hi"), "max_tokens": 0}, "max_tokens", "at least 1, got 0"),
        (
            {**user("hi"), "max_completion_tokens": 0, "max_tokens": 5000},
            "max_completion_tokens",
            "at least 1, got 0",
        ),
        ({**user("hi"), "best_of": 2, "stream": True}, "best_of", "cannot be streamed"),
        ({**user("hi"), "max_tokens": "10"}, "max_tokens", "got a string"),
        ({**user("hi"), "max_tokens": 1.5}, "max_tokens", "got 1.5"),
        ({**user("hi"), "max_completion_tokens": True}, "max_completion_tokens", "got a boolean"),
        ({**user("hi"), "n": 0}, "n", "at least 1, got 0"),
    ],
)
def test_malformed_chat_body_is_a_bad_request_naming_the_field(
    body: dict[str, Any], param: str, hint: str
) -> None:
    with pytest.raises(BadRequest) as excinfo:
        chat(body)
    assert excinfo.value.param == param
    assert hint in excinfo.value.message
    assert excinfo.value.status == 400


def completions(body: dict[str, Any], enc: Any = CL100K) -> Estimate:
    return estimate_completions(body, enc, **LIMITS)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("hello world", 2),
        (["hello", "hello world"], 3),
        ([15339, 1917, 0], 3),
        ([[15339, 1917], [1]], 3),
    ],
)
def test_completions_prompt_forms(prompt: Any, expected: int) -> None:
    assert completions({"prompt": prompt}).prompt_tokens == expected


def test_completions_without_prompt_count_the_implicit_endoftext() -> None:
    assert completions({}).prompt_tokens == 1


def test_completions_suffix_is_part_of_the_prompt() -> None:
    assert completions({"prompt": "hello", "suffix": " world"}).prompt_tokens == 2


def test_completions_suffix_follows_every_prompt_of_a_batch() -> None:
    batch = {"prompt": ["hello", "hello", [15339]], "suffix": " world"}
    assert completions(batch).prompt_tokens == 3 + 3 * 1


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 100),
        ({"max_tokens": 10}, 10),
        ({"max_tokens": 10, "max_completion_tokens": 99}, 10),
        ({"max_tokens": 10, "n": 2}, 20),
        ({"max_tokens": 10, "best_of": 3}, 30),
        ({"max_tokens": 10, "n": 2, "best_of": 5}, 50),
        ({"max_tokens": 10, "n": 4, "best_of": 2}, 40),
        ({"max_tokens": 10, "prompt": ["a", "b", "c"]}, 30),
        ({"max_tokens": 10, "prompt": [[1, 2], [3]], "n": 2}, 40),
        ({"max_tokens": 10, "prompt": ["a", "b"], "best_of": 3}, 60),
        ({"max_tokens": 10, "prompt": [15339, 1917, 0]}, 10),
    ],
)
def test_completions_bill_every_generated_candidate(fields: dict[str, Any], expected: int) -> None:
    """max(n, best_of) for each prompt of a batch (a list of strings or of token lists); a
    list of token ids is one prompt."""
    assert completions({"prompt": "x", **fields}).completion_tokens == expected


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": 5}, "prompt"),
        ({"prompt": ["a", {"b": 1}]}, "prompt[1]"),
        ({"prompt": [[1, "2"]]}, "prompt[0]"),
        ({"prompt": [-1]}, "prompt[0]"),
        ({"prompt": "x", "suffix": 3}, "suffix"),
        ({"prompt": "x", "best_of": 0}, "best_of"),
        ({"prompt": [], "max_tokens": 5}, "prompt"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ],
)
def test_malformed_completions_body_is_a_bad_request(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as excinfo:
        completions(body)
    assert excinfo.value.param == param


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hello world", 2),
        (["hello", "world"], 2),
        ([1, 2, 3], 3),
        ([[1, 2], [3]], 3),
    ],
)
def test_embeddings_count_input_and_complete_nothing(value: Any, expected: int) -> None:
    assert estimate_embeddings({"input": value}, CL100K, **LIMITS) == Estimate(expected, 0)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": None}, "input"),
        ({"input": {"text": "a"}}, "input"),
        ({"input": [True]}, "input[0]"),
    ],
)
def test_malformed_embeddings_body_is_a_bad_request(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as excinfo:
        estimate_embeddings(body, CL100K, **LIMITS)
    assert excinfo.value.param == param


@pytest.mark.parametrize(
    ("body", "endpoint", "expected"),
    [
        ({"max_completion_tokens": 5, "max_tokens": 9}, "chat", 5),
        ({"max_tokens": 9}, "chat", 9),
        ({"max_tokens": None}, "chat", None),
        ({}, "chat", None),
        ({"max_completion_tokens": 5, "max_tokens": 9}, "completions", 9),
        ({"max_completion_tokens": 5}, "completions", None),
        ({"max_tokens": 9}, "embeddings", None),
    ],
)
def test_completion_limit_is_what_the_client_asked_for(
    body: dict[str, Any], endpoint: Any, expected: int | None
) -> None:
    assert completion_limit(body, endpoint) == expected


def test_the_count_cache_answers_what_tokenising_would_and_stays_bounded() -> None:
    from proxy.core.encodings import get_encoding
    from proxy.metering.text_counter import _CountCache

    enc = get_encoding("o200k_base")
    cache = _CountCache(max_chars=1000)
    texts = [f"message {i}: " + "lorem ipsum " * (i % 7) for i in range(200)]
    for _ in range(2):  # the second pass is answered from the cache where it still holds
        for text in texts:
            assert cache.count(enc, text) == len(enc.encode_ordinary(text))
    assert cache._chars <= 1000
    assert sum(len(t) for _, t in cache._counts) == cache._chars
