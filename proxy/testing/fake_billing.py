"""What the fake provider bills beyond tokens, by the providers' published rules, in code of the
fake's own (never the proxy's metering/billable.py): the service tier a call is served at, the
hosted tool uses a call makes, and the prompt tokens it reports as audio.

- Service tier (OpenAI, Anthropic): a call naming a tier is served at it (`standard_only` is the
  standard tier); `auto`, or no tier, gets the account's configured tier.
- Hosted tools, Responses: every built-in tool call of a response counts against its
  `max_tool_calls`; each is an output item `<tool>_call`, billed per call (web_search_preview as
  web_search), code_interpreter's per container, an `mcp` server's at no fee. Tools billed by
  tokens alone make no such call. Each `mcp` tool entry also imports its server's tool list (an
  `mcp_list_tools` item, no call) into the prompt, as OpenAI's remote MCP guide describes.
- Server tools, Anthropic: web_search and web_fetch uses, each at most the tool's `max_uses`.
- Audio, OpenAI chat: the tokens of the `input_audio` parts (fake_tokens' rule) are reported
  apart (`prompt_tokens_details.audio_tokens`); a call asking for audio back (`modalities`)
  gets a voice answer, half of its completion audio (`completion_tokens_details.audio_tokens`),
  its transcript the text. Audio tokens are billed at the audio prices at any prompt size: a
  long-context rate applies to the text, media tokens keep their own price.
"""

from __future__ import annotations

import re
from typing import Any

from proxy.testing import fake_shapes, fake_tokens

FREE_TOOLS = frozenset(
    {"function", "custom", "computer_use_preview", "local_shell", "shell", "apply_patch"}
)
"""Responses tools billed by their tokens alone (the client runs them)."""


def served_tier(body: dict[str, Any], configured: str) -> str:
    """The tier a call is served at, in OpenAI's names (`default` for the standard one)."""
    asked = body.get("service_tier")
    if asked is None or asked == "auto":
        return configured
    return "default" if asked == "standard_only" else str(asked)


def hosted_tools(
    endpoint: str, body: dict[str, Any], made: int
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The hosted tool uses a call makes, by tool, when each tool would use `made` if allowed;
    on Responses, their output items too (all of the first hosted tool in `tools`), after the
    tool list of each `mcp` entry. Each item, a call or a tool list, adds to the prompt."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
    if endpoint == "messages":
        calls = {}
        for tool in tools:
            kind = re.sub(r"_\d{8}$", "", str(tool.get("type")))
            if kind in ("web_search", "web_fetch") and made:
                calls[kind] = min(made, tool.get("max_uses") or made)
        return calls, []
    servers = [t for t in tools if t.get("type") == "mcp"]
    listed = [fake_shapes.mcp_list_tools(t, i) for i, t in enumerate(servers)]
    hosted = [str(t.get("type")) for t in tools if t.get("type") not in FREE_TOOLS]
    if not hosted or not made:
        return {}, listed
    kind = re.sub(r"_\d{4}_\d{2}_\d{2}$", "", hosted[0]).removesuffix("_preview")
    limit = body.get("max_tool_calls")
    n = made if limit is None else min(made, limit)
    return ({kind: n} if n else {}), listed + [fake_shapes.tool_item(kind, i) for i in range(n)]


def audio_prompt_tokens(endpoint: str, body: dict[str, Any]) -> int:
    """Chat: the prompt tokens of the request's `input_audio` parts, which OpenAI reports as
    audio; nothing on other endpoints."""
    messages = body.get("messages") if endpoint == "chat" else None
    tokens = 0
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "input_audio":
                audio = part.get("input_audio")
                tokens += fake_tokens.audio_tokens(
                    audio.get("data") if isinstance(audio, dict) else None
                )
    return tokens


def audio_completion_tokens(endpoint: str, body: dict[str, Any], generated: int) -> int:
    """Chat: of the `generated` completion tokens of a call asking for audio back, the half
    (rounded down) that is audio; nothing for other calls."""
    modalities = body.get("modalities") if endpoint == "chat" else None
    asks = isinstance(modalities, list) and "audio" in modalities
    return generated // 2 if asks else 0
