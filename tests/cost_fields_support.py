"""What the cost-fields property (tests/gateway/test_cost_fields_property.py) shares: its
policy, the request it sends, the values its bodies draw on (valid, and the odd ones a client
may send: limits of 0, negative or not integers, counts as strings), the media they carry, and
how the fake provider bills. The bodies themselves are in openai_bodies_support.py (chat,
completions, embeddings, the Responses API) and claude_bodies_support.py (Anthropic's Messages
API).

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


def optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def limits(fields: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """None, one or (conflicting) several of the endpoint's limit fields."""
    return st.dictionaries(st.sampled_from(fields), good_limits, max_size=len(fields))


def spoiled(
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
