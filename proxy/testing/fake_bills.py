"""What one call to the fake provider bills, as its settings say: the tokens of a chat or
completions call (cached, written, reasoning and audio tokens, documents, the service tier; a
completions call only what it generated), those of a Responses or Messages call with its hosted
tool uses and cache writes, and what its usage report says (less than billed, when told to
underreport). The counting rules are fake_tokens.py's and fake_billing.py's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from proxy.testing import fake_billing, fake_openai, fake_tokens
from proxy.testing.fake_claude_tokens import claude_cache_writes
from proxy.testing.fake_openai import Billed
from proxy.testing.fake_settings import FakeSettings


def bill(
    settings: FakeSettings, endpoint: str, body: dict[str, Any], prompt: int, visible: int
) -> Billed:
    """Chat bills cached, reasoning and audio tokens, documents and the service tier as the
    settings say; completions only what it generated."""
    model = body["model"]
    billed = Billed(endpoint, model, prompt, visible)
    if endpoint == "chat":
        s = settings
        documents = fake_tokens.documents(endpoint, body)
        prompt += documents * s.document_tokens
        cached = min(s.cached_tokens, prompt)
        written = min(s.openai_cache_write_tokens, prompt - cached)
        audio = s.audio_prompt_tokens
        if audio is None:
            audio = fake_billing.audio_prompt_tokens(endpoint, body)
        audio_in = min(audio, prompt - cached - written)
        audio_out = s.audio_completion_tokens
        completion = visible + s.reasoning_tokens + (audio_out or 0)
        if audio_out is None:
            audio_out = fake_billing.audio_completion_tokens(endpoint, body, visible)
        billed = Billed(
            endpoint,
            model,
            prompt,
            completion,
            cached,
            written,
            reasoning_tokens=s.reasoning_tokens,
            audio_prompt_tokens=audio_in,
            audio_completion_tokens=audio_out,
            service_tier=fake_billing.served_tier(body, s.service_tier),
            documents=documents,
            long_context=prompt > s.long_context_above,
        )
    return billed


def bill_shaped(
    settings: FakeSettings, endpoint: str, body: dict[str, Any], visible: int
) -> tuple[Billed, list[dict[str, Any]]]:
    """What a Responses or Messages call bills, and the hosted tool calls' output items."""
    s = settings
    documents = fake_tokens.documents(endpoint, body)
    calls, items = fake_billing.hosted_tools(endpoint, body, s.hosted_tool_calls)
    # Responses: each item (a call, an MCP server's tool list) adds to the prompt, but for a
    # call the client runs: it answers it in the next request.
    ran = [item for item in items if item.get("execution") != "client"]
    uses = len(ran) if endpoint == "responses" else sum(calls.values())
    tool_tokens = uses * s.tool_input_tokens
    if "code_interpreter" in calls:
        calls["code_interpreter"] = 1  # its calls share one container, billed once
    prompt = fake_openai.prompt_tokens(endpoint, body) + documents * s.document_tokens
    prompt += tool_tokens
    cached = min(s.cached_tokens, prompt)
    five, hour = (0, 0)
    if endpoint == "messages" and s.cache_control_writes:
        five, hour = claude_cache_writes(body)
    elif endpoint == "responses":
        five = s.openai_cache_write_tokens
    written = min(s.cache_write_tokens + five, prompt - cached)
    hour = min(hour, prompt - cached - written)
    reasoning = s.reasoning_tokens if endpoint == "responses" else 0
    billed = Billed(
        endpoint,
        body["model"],
        prompt,
        visible + reasoning,
        cached,
        written,
        reasoning,
        service_tier=fake_billing.served_tier(body, s.service_tier),
        tool_calls=calls,
        tool_input_tokens=tool_tokens,
        documents=documents,
        long_context=prompt > s.long_context_above,
        cache_write_1h_tokens=hour,
        cache_split_reported=s.cache_ttl_split,
        cache_split_zeroed=s.cache_split_zeroed,
        cache_writes_late=s.cache_writes_late,
    )
    return billed, items


def reported(settings: FakeSettings, billed: Billed) -> Billed:
    """What the usage report says was billed: less, with `underreport_completion`."""
    if not settings.underreport_completion:
        return billed
    completion = max(0, billed.completion_tokens - settings.underreport_completion)
    return dataclasses.replace(billed, completion_tokens=completion)
