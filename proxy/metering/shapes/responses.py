"""The OpenAI Responses API (`POST /v1/responses`): estimate, usage, stream, stored state.

`input` is a string or a list of items: messages (`role`, and `content` as a string or a list of
parts: input_text, input_image, input_file, output_text) and typed items (function calls and
their outputs, reasoning, ...), which are counted by their JSON but for the images they carry
(a screenshot, a function's image output: item_media.py), counted as a message's are; a stored
`prompt` (its variables) likewise. `instructions` is a system
message and a string `input` a user message, each counted with its role's tokens as chat counts
a message. `max_output_tokens` is the completion bound. Usage comes from the body, or from the
`response.completed` (or `.incomplete`, `.failed`) event of a stream; both carry
`usage.input_tokens`, `output_tokens` and the cached, cache-write and reasoning details, and the
response says what else it billed: its `service_tier`, and the hosted tool calls among its
`output` items (metering/billable.py).

Stored state: OpenAI keeps a response (`store` defaults to true) under the provider's account.
With `identity: api_key` every tenant shares that account, so another tenant holding a response
id could continue it. In gateway mode the proxy therefore sends `store: false` and refuses what
needs stored state (`previous_response_id`, `conversation`, `background`, `store: true`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from proxy.core.errors import BadRequest
from proxy.metering.estimate import (
    REPLY_PRIMING,
    TOKENS_PER_MESSAGE,
    TOOLS_OVERHEAD,
    Estimate,
    completion_limit,
    other_fields,
)
from proxy.metering.images import IMAGE_TOKENS, check_detail
from proxy.metering.pricing import Usage
from proxy.metering.request_body import expect_str
from proxy.metering.shapes import definitions_tokens, item_media
from proxy.metering.text_counter import TextCounter, Tokenizer
from proxy.metering.token_kinds import token_count
from proxy.metering.tool_uses import responses_tool_calls
from proxy.metering.usage import StreamUsage

_TEXT_PARTS = ("input_text", "output_text", "text")
_TERMINAL = ("response.completed", "response.incomplete", "response.failed")
_STREAMED_TEXT = (
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
)
_STATEFUL = ("previous_response_id", "conversation")
_MESSAGE_FIELDS = frozenset({"type", "role", "content", "id", "status", "phase"})
"""A message item's fields the estimate counts by shape, or that are billed nothing."""


def estimate_responses(
    body: Mapping[str, Any],
    enc: Tokenizer,
    *,
    default_max_tokens: int,
    tokenize_max_bytes: int,
    image_tokens_default: int = IMAGE_TOKENS,
) -> Estimate:
    """Prompt and completion tokens of a /v1/responses request."""
    counter = TextCounter(enc, tokenize_max_bytes, image_tokens_default)
    given = body.get("input")
    # A stored prompt may be the whole input: its template is reserved as a document.
    alone = given is None and body.get("prompt") is not None
    prompt = REPLY_PRIMING + (0 if alone else _input_tokens(counter, given))
    instructions = body.get("instructions")
    if instructions is not None:
        said = expect_str(instructions, "'instructions'")
        prompt += TOKENS_PER_MESSAGE + counter.count("system") + counter.count(said)
    if body.get("prompt") is not None:
        # A stored prompt's variables are text, images and files: counted as a typed item is.
        prompt += item_media.media_tokens(counter, body["prompt"], "prompt")
    prompt += definitions_tokens(counter, dict(body), TOOLS_OVERHEAD)
    text = body.get("text")
    if isinstance(text, dict) and isinstance(text.get("format"), dict):
        prompt += counter.count_json(text["format"])
    limit = completion_limit(body, "responses")
    return Estimate(prompt, default_max_tokens if limit is None else limit, counter.images)


def gateway_rules(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a call must change, or 400, when tenants share one provider key: no stored state."""
    for field in _STATEFUL:
        if body.get(field) is not None:
            raise BadRequest(
                f"'{field}' is not available through this gateway: every tenant shares one "
                "provider account, so stored responses are not kept. Send the earlier turns in "
                "'input' instead.",
                code="stored_state_unavailable",
                param=field,
            )
    for field in ("store", "background"):
        if body.get(field) is True:
            raise BadRequest(
                f"'{field}: true' is not available through this gateway: every tenant shares one "
                "provider account, so responses are never stored. Leave it out.",
                code="stored_state_unavailable",
                param=field,
            )
    return {} if body.get("store") is False else {"store": False}


def usage_of_response(obj: Mapping[str, Any]) -> Usage | None:
    """The usage of a whole response, or None if it is missing or malformed: its tokens, the
    service tier it reports and the hosted tool calls among its output items."""
    usage = parse_usage(obj.get("usage"))
    if usage is None:
        return None
    tier = obj.get("service_tier")
    return dataclasses.replace(
        usage,
        service_tier=tier if isinstance(tier, str) else None,
        tool_calls=responses_tool_calls(obj.get("output")),
    )


def parse_usage(usage: Any) -> Usage | None:
    """A Responses `usage` object as a Usage: cached and cache-write tokens are parts of
    `input_tokens`, reasoning tokens part of `output_tokens` (never counted below them)."""
    if not isinstance(usage, dict):
        return None
    prompt = token_count(usage.get("input_tokens"))
    completion = token_count(usage.get("output_tokens"))
    if prompt is None or completion is None:
        return None
    cached = min(_detail(usage, "input_tokens_details", "cached_tokens"), prompt)
    written = min(_detail(usage, "input_tokens_details", "cache_write_tokens"), prompt - cached)
    reasoning = _detail(usage, "output_tokens_details", "reasoning_tokens")
    return Usage(prompt, max(completion, reasoning), cached, written)


class ResponsesStreamUsage(StreamUsage):
    """Follows a Responses stream: text deltas as they come, usage from the final event."""

    def feed(self, event: Mapping[str, Any]) -> None:
        self.events += 1
        kind = event.get("type")
        if kind in _TERMINAL:
            self.done = True
            response = event.get("response")
            usage = usage_of_response(response) if isinstance(response, dict) else None
            if usage is not None:
                self.usage = usage
        elif kind in _STREAMED_TEXT:
            output = token_count(event.get("output_index")) or 0
            part = token_count(event.get("content_index")) or 0
            self._add((output, part, str(kind)), event.get("delta"))


def _detail(usage: Mapping[str, Any], details: str, field: str) -> int:
    found = usage.get(details)
    return (token_count(found.get(field)) or 0) if isinstance(found, dict) else 0


def _input_tokens(counter: TextCounter, value: Any) -> int:
    if isinstance(value, str):
        return TOKENS_PER_MESSAGE + counter.count("user") + counter.count(value)
    if not isinstance(value, list) or not value:
        raise BadRequest(
            "'input' is required without a stored 'prompt': a string, or a non-empty array of "
            "input items (messages with 'role' and 'content', function call outputs, ...)",
            param="input",
        )
    return sum(_item_tokens(counter, item, f"input[{i}]") for i, item in enumerate(value))


def _item_tokens(counter: TextCounter, item: Any, path: str) -> int:
    if not isinstance(item, dict):
        raise BadRequest(
            f"{path} must be an object: a message with 'role' and 'content', or a typed item",
            param=path,
        )
    if item.get("type", "message") != "message":
        # Function calls and outputs, reasoning, screenshots: their JSON bounds them, but for
        # the images they carry, which are billed as images wherever they are.
        return TOKENS_PER_MESSAGE + item_media.media_tokens(counter, item, path)
    role = counter.count(expect_str(item.get("role"), f"{path}.role"))
    tokens = TOKENS_PER_MESSAGE + role + _content_tokens(counter, item.get("content"), path)
    return tokens + other_fields(counter, item, _MESSAGE_FIELDS)


def _content_tokens(counter: TextCounter, content: Any, path: str) -> int:
    if isinstance(content, str):
        return counter.count(content)
    if not isinstance(content, list):
        raise BadRequest(
            f"{path}.content must be a string or an array of content parts "
            "(input_text, input_image, input_file)",
            param=f"{path}.content",
        )
    return sum(
        _part_tokens(counter, part, f"{path}.content[{i}]") for i, part in enumerate(content)
    )


def _part_tokens(counter: TextCounter, part: Any, path: str) -> int:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise BadRequest(f"{path} must be an object with a string 'type'", param=path)
    kind = part["type"]
    if kind in _TEXT_PARTS:
        return counter.count(expect_str(part.get("text"), f"{path}.text"))
    if kind == "input_image":
        url = part.get("image_url")
        check_detail(part.get("detail"), f"{path}.detail")
        return counter.image(url if isinstance(url, str) else "", part.get("detail"))
    # Files, refusals carry their payload inline: their JSON bounds them. A part of another
    # API's image type (forwarded with `request_fields: forward`) is still an image.
    return item_media.media_tokens(counter, part, path)
