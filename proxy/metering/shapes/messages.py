"""Anthropic's Messages API (`POST /v1/messages`): estimate, usage, stream, error shape.

`max_tokens` is required and is the completion bound. `system` (a string or text blocks) and
`messages` (content as a string or blocks) are counted with the model's tiktoken encoding; the
policy's `tokenizer_factor` scales the count (budget/call.py), since Claude's tokenizer is not
available offline. Usage: `input_tokens` excludes the cache, so the prompt is input + cache writes +
cache reads; a stream reports input and cache tokens in `message_start` and the cumulative
`output_tokens` in `message_delta`. Cache writes are split by TTL in `cache_creation`
(`ephemeral_5m_input_tokens`, `ephemeral_1h_input_tokens`), each priced at its own rate; writes
the split does not account for are priced at the longest TTL the call asked for. The usage also
says what else was billed: the `service_tier` and the server tools' calls
(`server_tool_use.web_search_requests`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from proxy.core.errors import BadRequest, ClientError
from proxy.metering.estimate import (
    REPLY_PRIMING,
    TOKENS_PER_MESSAGE,
    TOOLS_OVERHEAD,
    Estimate,
    completion_limit,
    other_fields,
)
from proxy.metering.pricing import Usage
from proxy.metering.request_body import expect_str
from proxy.metering.shapes import blocks, definitions_tokens
from proxy.metering.text_counter import TextCounter, Tokenizer
from proxy.metering.token_kinds import token_count
from proxy.metering.tool_uses import anthropic_tool_calls
from proxy.metering.usage import StreamUsage

IMAGE_TOKENS = 1600
"""Claude scales images to at most ~1.15 megapixels, about w * h / 750 = 1600 tokens: the most
an image costs on the Claude models up to 4.6. Later ones read larger images (Claude Opus 4.7:
up to 2576 px on the long edge, 4,784 tokens), so each image counts this times the model's
`image_token_factor` (published for the models the proxy knows, policy/features.py), and is
refused on a model with none."""

_DELTA_TEXT = ("text", "partial_json", "thinking")
_MESSAGE_FIELDS = frozenset({"role", "content"})

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
"""Anthropic's error types by status; other 4xx are invalid_request_error, other 5xx api_error."""


def estimate_messages(
    body: Mapping[str, Any],
    enc: Tokenizer,
    *,
    default_max_tokens: int,
    tokenize_max_bytes: int,
    image_tokens_default: int = IMAGE_TOKENS,
) -> Estimate:
    """Prompt and completion tokens of a /v1/messages request, in the encoding's tokens.
    `default_max_tokens` is unused: the Messages API requires `max_tokens`; so is
    `image_tokens_default`: Claude's images count by their own rule."""
    limit = completion_limit(body, "messages")
    if limit is None:
        raise BadRequest(
            "'max_tokens' is required by the Messages API: the most tokens the reply may use, "
            "e.g. 1024.",
            param="max_tokens",
        )
    counter = TextCounter(enc, tokenize_max_bytes)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(
            "'messages' must be a non-empty array of {role, content} objects", param="messages"
        )
    prompt = REPLY_PRIMING + _system_tokens(counter, body.get("system"))
    prompt += sum(_message_tokens(counter, m, f"messages[{i}]") for i, m in enumerate(messages))
    # The tool-use system prompt Anthropic adds is the model's `tool_prompt_tokens`, which the
    # reservation adds once, unscaled (billable_reserve.reservation): it is not counted here.
    prompt += definitions_tokens(counter, dict(body), TOOLS_OVERHEAD)
    output = body.get("output_config")
    if isinstance(output, dict) and isinstance(output.get("format"), dict):
        prompt += counter.count_json(output["format"])
    return Estimate(prompt, limit, counter.images)


def usage_of_message(obj: Mapping[str, Any]) -> Usage | None:
    """The usage of a whole message, or None if it is missing or malformed."""
    return parse_usage(obj.get("usage"))


def parse_usage(usage: Any) -> Usage | None:
    """An Anthropic `usage` object: cache writes and reads are prompt tokens besides
    `input_tokens`; `service_tier` and `server_tool_use` say what else was billed."""
    if not isinstance(usage, dict):
        return None
    fresh = token_count(usage.get("input_tokens"))
    output = token_count(usage.get("output_tokens"))
    if fresh is None or output is None:
        return None
    five, hour, unsplit = _cache_writes(usage)
    read = token_count(usage.get("cache_read_input_tokens")) or 0
    tier = usage.get("service_tier")
    return Usage(
        fresh + five + hour + unsplit + read,
        output,
        read,
        five,
        cache_write_1h_tokens=hour,
        cache_write_unsplit_tokens=unsplit,
        service_tier=tier if isinstance(tier, str) else None,
        tool_calls=anthropic_tool_calls(usage.get("server_tool_use")),
    )


def _cache_writes(usage: Mapping[str, Any]) -> tuple[int, int, int]:
    """Cache writes at the 5-minute and the one-hour TTL (`cache_creation`), and those whose TTL
    the usage does not say: all of `cache_creation_input_tokens` without a split, what it holds
    beyond the split with one (Anthropic has answered 0/0 splits of a total on web search turns;
    a stream's `message_delta` may raise the total without resending the split). Those are
    charged at the longest TTL the call asked for, never assumed to be 5-minute ones."""
    total = token_count(usage.get("cache_creation_input_tokens")) or 0
    split = usage.get("cache_creation")
    if not isinstance(split, dict):
        return 0, 0, total
    five = token_count(split.get("ephemeral_5m_input_tokens")) or 0
    hour = token_count(split.get("ephemeral_1h_input_tokens")) or 0
    return five, hour, max(0, total - five - hour)


class MessagesStreamUsage(StreamUsage):
    """Follows a Messages stream: `message_start` holds the input side of the usage, each
    `message_delta` the output so far (and, from newer APIs, updated input counts)."""

    def __init__(self) -> None:
        super().__init__()
        self._reported: dict[str, Any] = {}

    def feed(self, event: Mapping[str, Any]) -> None:
        self.events += 1
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, dict) and isinstance(message.get("usage"), dict):
                self._reported = dict(message["usage"])
        elif kind == "message_delta" and isinstance(event.get("usage"), dict):
            given = {k: v for k, v in event["usage"].items() if v is not None}
            self._reported = {**self._reported, **given}
            self.usage = parse_usage(self._reported) or self.usage
        elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
            index = token_count(event.get("index")) or 0
            for field in _DELTA_TEXT:
                self._add((index, field), event["delta"].get(field))
        elif kind == "message_stop":
            self.done = True


def error_body(exc: ClientError) -> bytes:
    """The error in Anthropic's shape; `code` keeps the proxy's own reason (budget_exceeded,
    quota_exceeded, ...) for clients that tell them apart."""
    kind = ERROR_TYPES.get(exc.status)
    if kind is None:
        kind = "api_error" if exc.status >= 500 else "invalid_request_error"
    error = {"type": kind, "message": exc.message, "code": exc.code or exc.type}
    return orjson.dumps({"type": "error", "error": error})


def _system_tokens(counter: TextCounter, system: Any) -> int:
    if system is None:
        return 0
    if isinstance(system, str):
        return TOKENS_PER_MESSAGE + counter.count(system)
    if not isinstance(system, list):
        raise BadRequest("'system' must be a string or an array of text blocks", param="system")
    return TOKENS_PER_MESSAGE + _blocks_tokens(counter, system, "system")


def _message_tokens(counter: TextCounter, message: Any, path: str) -> int:
    if not isinstance(message, dict):
        raise BadRequest(f"{path} must be an object with 'role' and 'content'", param=path)
    head = TOKENS_PER_MESSAGE + counter.count(expect_str(message.get("role"), f"{path}.role"))
    # Fields besides role and content (forwarded with request_fields: forward): their JSON.
    head += other_fields(counter, message, _MESSAGE_FIELDS)
    content = message.get("content")
    if isinstance(content, str):
        return head + counter.count(content)
    if not isinstance(content, list):
        raise BadRequest(
            f"{path}.content must be a string or an array of content blocks",
            param=f"{path}.content",
        )
    return head + _blocks_tokens(counter, content, f"{path}.content")


def _blocks_tokens(counter: TextCounter, blocks: list[Any], path: str) -> int:
    return sum(_block_tokens(counter, block, f"{path}[{i}]") for i, block in enumerate(blocks))


def _block_tokens(counter: TextCounter, block: Any, path: str) -> int:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise BadRequest(f"{path} must be an object with a string 'type'", param=path)
    kind = block["type"]
    if kind == "text":
        return counter.count(expect_str(block.get("text"), f"{path}.text"))
    if kind == "image":
        return counter.flat_image(IMAGE_TOKENS)
    if kind == "tool_result" and isinstance(block.get("content"), list):
        return _blocks_tokens(counter, block["content"], f"{path}.content")
    # Tool calls and results, documents, thinking: their JSON bounds them, but for the images
    # they hold (a document of content blocks), which are billed by their pixels.
    images = blocks.of_type(block, path, "image")
    return counter.count_json(block) + sum(counter.flat_image(IMAGE_TOKENS) for _ in images)
