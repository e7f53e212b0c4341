"""Request and answer shapes beyond chat completions: the OpenAI Responses API (`responses.py`)
and Anthropic's Messages API (`messages.py`). Each module estimates a request, reads the usage of
a whole answer and of a stream, as `metering/estimate.py` and `metering/usage.py` do for chat. No
I/O."""

from __future__ import annotations

from typing import Any

from proxy.core.errors import BadRequest
from proxy.metering.text_counter import TextCounter


def definitions_tokens(counter: TextCounter, body: dict[str, Any], overhead: int) -> int:
    """Tool definitions and a named tool choice, by their JSON (longer than what the model is
    shown)."""
    tools = body.get("tools")
    tokens = 0
    if tools is not None:
        if not isinstance(tools, list):
            raise BadRequest("'tools' must be an array of tool definitions", param="tools")
        tokens += overhead + counter.count_json(tools) if tools else 0
    if isinstance(body.get("tool_choice"), dict):
        tokens += counter.count_json(body["tool_choice"])
    return tokens
