"""The fake provider's own token counter (proxy/testing/fake_tokens.py), checked against the numbers
the providers publish: the OpenAI cookbook's measured prompt sizes, the vision tile rule, the audio
and Claude rules the module documents. The tests' oracles rest on it, so it is pinned to
literal numbers here, never to the proxy's estimate."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest
from cookbook_support import COOKBOOK_MESSAGES, COOKBOOK_PROMPT_TOKENS

from proxy.core.encodings import get_encoding
from proxy.testing.fake_tokens import audio_tokens, chat_prompt_tokens, prompt_tokens

# The cookbook's tools example (section 7).
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The city and state, e.g. San Francisco, CA",
                },
                "unit": {
                    "type": "string",
                    "description": "The unit of temperature to return",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
            "required": ["location"],
        },
    },
}
WEATHER_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


def tokens(text: str, encoding: str = "o200k_base") -> int:
    return len(get_encoding(encoding).encode_ordinary(text))


def png_url(width: int, height: int) -> str:
    """A PNG data URL: the signature and the IHDR chunk are all the fake reads."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0" * 4
    return "data:image/png;base64," + base64.b64encode(head).decode()


def wav(seconds: float, rate: int = 8000) -> str:
    data = b"\x80" * int(rate * seconds)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    chunks = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return base64.b64encode(b"RIFF" + struct.pack("<I", len(chunks)) + chunks).decode()


def image_message(url: str, detail: str = "high") -> list[dict[str, Any]]:
    part = {"type": "image_url", "image_url": {"url": url, "detail": detail}}
    return [{"role": "user", "content": [part]}]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-3.5-turbo", COOKBOOK_PROMPT_TOKENS["cl100k_base"]),
        ("gpt-4", COOKBOOK_PROMPT_TOKENS["cl100k_base"]),
        ("gpt-4o", COOKBOOK_PROMPT_TOKENS["o200k_base"]),
        ("gpt-4o-mini", COOKBOOK_PROMPT_TOKENS["o200k_base"]),
    ],
)
def test_chat_matches_the_cookbooks_measured_prompt(model: str, expected: int) -> None:
    assert chat_prompt_tokens({"model": model, "messages": COOKBOOK_MESSAGES}) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_tools_match_the_cookbooks_measured_prompt(model: str, expected: int) -> None:
    body = {"model": model, "messages": WEATHER_MESSAGES, "tools": [WEATHER_TOOL]}
    assert chat_prompt_tokens(body) == expected


def test_assistant_tool_calls_bill_their_name_and_arguments() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    body = {"model": "gpt-4o", "messages": [message]}
    assert chat_prompt_tokens(body) == 3 + 1 + tokens("f") + tokens('{"a": 1}') + 3


@pytest.mark.parametrize(
    ("model", "size", "detail", "image"),
    [
        ("gpt-4o", (1024, 1024), "high", 85 + 170 * 4),  # 768 x 768
        ("gpt-4o", (2048, 4096), "auto", 85 + 170 * 6),  # 768 x 1536
        ("gpt-4o", (100, 100), "high", 85 + 170),  # never scaled up
        ("gpt-4o", (4000, 4000), "low", 85),
        ("gpt-4o-mini", (1024, 1024), "high", 2833 + 5667 * 4),
        ("gpt-4o", None, "high", 85 + 170 * 8),  # not measurable: 768 x 2048
    ],
)
def test_images_follow_openais_tile_rule(
    model: str, size: tuple[int, int] | None, detail: str, image: int
) -> None:
    url = "https://example.com/cat.png" if size is None else png_url(*size)
    body = {"model": model, "messages": image_message(url, detail)}
    assert chat_prompt_tokens(body) == 3 + 1 + image + 3


def test_audio_is_a_token_per_100_ms() -> None:
    part = {"type": "input_audio", "input_audio": {"data": wav(2.5), "format": "wav"}}
    body = {"model": "gpt-4o-audio-preview", "messages": [{"role": "user", "content": [part]}]}
    assert chat_prompt_tokens(body) == 3 + 1 + 25 + 3


def riff_wav(*data: tuple[bytes, int], riff: bytes = b"RIFF") -> str:
    """An 8 kHz 8-bit mono WAV of one `data` chunk per (audio, the size its header says)."""
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 8000, 1, 8)
    chunks = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"".join(b"data" + struct.pack("<I", size) + audio for audio, size in data)
    return base64.b64encode(riff + struct.pack("<I", len(chunks)) + chunks).decode()


SECOND = b"\x80" * 8000


@pytest.mark.parametrize(
    ("audio", "billed"),
    [
        pytest.param(riff_wav((SECOND * 2, 3600 * 8000)), 20, id="size-past-the-end"),
        pytest.param(riff_wav((SECOND * 2, 0)), 20, id="size-0-to-the-end"),
        pytest.param(riff_wav((SECOND * 2, 0xFFFFFFFF)), 20, id="size-unknown-to-the-end"),
        pytest.param(riff_wav((SECOND, 8000), (SECOND * 2, 16_000)), 30, id="two-data-chunks"),
        pytest.param(riff_wav((SECOND * 2, 0xFFFFFFFF), riff=b"RF64"), 20, id="rf64"),
    ],
)
def test_audio_is_billed_for_the_bytes_a_wav_holds(audio: str, billed: int) -> None:
    """As a decoder plays it: what its `data` chunks hold, never the size a header claims."""
    assert audio_tokens(audio) == billed


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"prompt": "hello world"}, 2),
        ({"prompt": ["hello", "hello world"]}, 3),
        ({"prompt": [[1, 2, 3], [4]]}, 4),
        ({"prompt": [5, 6]}, 2),
        ({}, 1),  # <|endoftext|>
        ({"prompt": "hello", "suffix": " world"}, 2),
    ],
)
def test_completions_bill_plain_tokens(body: dict[str, Any], expected: int) -> None:
    assert prompt_tokens("completions", {"model": "gpt-3.5-turbo-instruct", **body}) == expected


def test_embeddings_bill_plain_tokens() -> None:
    body = {"model": "text-embedding-3-small", "input": ["hello world", [1, 2, 3]]}
    assert prompt_tokens("embeddings", body) == 2 + 3


def test_responses_render_instructions_and_input_as_chat_messages() -> None:
    body = {"model": "gpt-4o-mini", "input": "hello world", "instructions": "Be terse."}
    developer = 3 + tokens("developer") + tokens("Be terse.")
    user = 3 + tokens("user") + tokens("hello world")
    assert prompt_tokens("responses", body) == developer + user + 3


def test_responses_items_bill_their_role_content_name_and_output() -> None:
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "hello"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "world"},
    ]
    expected = (3 + 1 + tokens("hello")) + (3 + tokens("f") + tokens("{}")) + (3 + 1) + 3
    assert prompt_tokens("responses", {"model": "gpt-4o-mini", "input": items}) == expected


def claude(rendered: str) -> int:
    """The fake's Claude text count: cl100k_base tokens of the rendered prompt × 11/10, up."""
    return -(-tokens(rendered, "cl100k_base") * 11 // 10)


def test_claude_renders_turns_and_scales_the_count_by_eleven_tenths() -> None:
    body = {
        "model": "claude-sonnet-4",
        "system": "You are terse.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
    }
    expected = claude("You are terse.\n\nHuman: hello\n\nAssistant:")
    assert prompt_tokens("messages", body) == expected
    blocks = {**body, "system": [{"type": "text", "text": "You are terse."}]}
    assert prompt_tokens("messages", blocks) == expected


def test_claude_adds_its_tool_prompt_and_images_unscaled() -> None:
    tool = {"name": "f", "input_schema": {"type": "object"}}
    data = png_url(300, 250).removeprefix("data:image/png;base64,")
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
    body = {"model": "claude-sonnet-4", "messages": [{"role": "user", "content": [image]}]}
    turns = "\n\nHuman: \n\nAssistant:"
    assert prompt_tokens("messages", body) == claude(turns) + 100  # 300 * 250 / 750
    with_tool = claude(turns + '{"name":"f","input_schema":{"type":"object"}}') + 100 + 346
    assert prompt_tokens("messages", {**body, "tools": [tool]}) == with_tool
