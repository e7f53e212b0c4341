"""What the fake provider bills beyond tokens, by the providers' published rules, in code of the
fake's own (never the proxy's metering/billable.py): the service tier a call is served at, the
hosted tool uses a call makes, and the prompt tokens it reports as audio.

- Service tier (OpenAI, Anthropic): a call naming a tier is served at it (`standard_only` is the
  standard tier); `auto`, or no tier, gets the account's configured tier.
- Hosted tools, Responses: every built-in tool call of a response counts against its
  `max_tool_calls`; each is an output item `<tool>_call`, billed per call (web_search_preview as
  web_search), code_interpreter's per container, an `mcp` server's at no fee. Tools billed by
  tokens alone make no such call. Each `mcp` tool entry also imports its server's tool list (an
  `mcp_list_tools` item, no call) into the prompt, as OpenAI's remote MCP guide describes. A
  call's tools are those of `tools`, each namespace's in its place, and those a
  `tool_search_output` item of the input loads. A tool search the client runs (`execution:
  client`) is called as a `tool_search_call` item of that execution, which the client answers:
  no fee, nothing added to the prompt.
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
"""Responses tools billed by their tokens alone (the client runs them), and so are a `namespace`
(the tools in it are billed as if listed apart) and a `tool_search` with `execution: client`
(the client runs the search; a call of it is a `tool_search_call` item, no fee)."""


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
    on Responses, their output items too (all of the first hosted tool in `tools`, a
    namespace's tools and those a `tool_search_output` input item loads among them), after the
    tool list of each `mcp` entry, and before one call of a tool search the client runs, if
    any. Each item but that one, a call or a tool list, adds to the prompt."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
    if endpoint == "messages":
        calls = {}
        for tool in tools:
            kind = re.sub(r"_\d{8}$", "", str(tool.get("type")))
            if kind in ("web_search", "web_fetch") and made:
                calls[kind] = min(made, tool.get("max_uses") or made)
        return calls, []
    tools = _responses_tools(tools, body.get("input"))
    servers = [t for t in tools if t.get("type") == "mcp"]
    listed = [fake_shapes.mcp_list_tools(t, i) for i, t in enumerate(servers)]
    client = [t for t in tools if _client_search(t)]
    hosted = [
        str(t.get("type")) for t in tools if t.get("type") not in FREE_TOOLS and t not in client
    ]
    searched = [fake_shapes.client_search_call()] if client and made else []
    if not hosted or not made:
        return {}, listed + searched
    kind = re.sub(r"_\d{4}_\d{2}_\d{2}$", "", hosted[0]).removesuffix("_preview")
    limit = body.get("max_tool_calls")
    n = made if limit is None else min(made, limit)
    made_items = [fake_shapes.tool_item(kind, i) for i in range(n)]
    return ({kind: n} if n else {}), listed + made_items + searched


def _client_search(tool: dict[str, Any]) -> bool:
    return tool.get("type") == "tool_search" and tool.get("execution") == "client"


def _responses_tools(tools: list[dict[str, Any]], items: Any) -> list[dict[str, Any]]:
    """A Responses call's tools: those of `tools`, and those each `tool_search_output` item of
    its input loads; each namespace's tools in its place."""
    outputs = [
        item
        for item in (items if isinstance(items, list) else ())
        if isinstance(item, dict) and item.get("type") == "tool_search_output"
    ]
    loaded = [tool for item in outputs for tool in item.get("tools") or ()]
    found: list[dict[str, Any]] = []
    for tool in [*tools, *loaded]:
        if not isinstance(tool, dict):
            continue
        inside = tool.get("tools") if tool.get("type") == "namespace" else None
        found += _responses_tools(inside, None) if isinstance(inside, list) else [tool]
    return found


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
