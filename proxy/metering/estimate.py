"""Tokens in and out of a request, estimated before it is forwarded. Pure: no I/O.

Prompt tokens follow the OpenAI cookbook's chat formula (3 per message, 1 more for a `name`, 3 to
prime the reply) plus rules for what tiktoken cannot see: images and audio are priced by rule,
tool and schema definitions by their JSON. Completion tokens are what the client allows the
provider to produce: the requested limit, or the plan's default, times the number of choices.

Tokenising runs on the event loop, so it is bounded (text_counter.py): each request may
tokenise at most `tokenize_max_bytes` of text in total.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from proxy.core.errors import BadRequest
from proxy.metering.audio import input_audio_tokens
from proxy.metering.images import IMAGE_TOKENS, check_detail
from proxy.metering.request_body import describe, expect_str
from proxy.metering.shapes.item_media import media_tokens
from proxy.metering.text_counter import TextCounter, Tokenizer

EndpointName = Literal["chat", "completions", "embeddings", "responses", "messages"]

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
TOOLS_OVERHEAD = 19
"""The preamble OpenAI wraps around function definitions (the cookbook measures 7 + 12)."""
TOKENS_PER_TOOL_CALL = 3
"""Separators around each call's name and arguments in the rendered prompt."""


@dataclass(frozen=True, slots=True)
class Estimate:
    prompt_tokens: int
    completion_tokens: int
    image_tokens: int = 0
    """Of `prompt_tokens`, those counted for image inputs by the tile rule (each model scales
    them by its own image_token_factor)."""


def estimate_chat(
    body: Mapping[str, Any],
    enc: Tokenizer,
    *,
    default_max_tokens: int,
    tokenize_max_bytes: int,
    image_tokens_default: int = IMAGE_TOKENS,
) -> Estimate:
    """Prompt and completion tokens of a /v1/chat/completions request; an image whose size
    cannot be read counts `image_tokens_default`."""
    counter = TextCounter(enc, tokenize_max_bytes, image_tokens_default)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(
            "'messages' must be a non-empty array of message objects", param="messages"
        )
    prompt = REPLY_PRIMING + sum(
        _message_tokens(counter, message, f"messages[{i}]") for i, message in enumerate(messages)
    )
    prompt += _definitions_tokens(counter, body)
    limit = completion_limit(body, "chat")
    completion = (default_max_tokens if limit is None else limit) * choices(body, "chat")
    return Estimate(prompt, completion, counter.images)


def estimate_completions(
    body: Mapping[str, Any],
    enc: Tokenizer,
    *,
    default_max_tokens: int,
    tokenize_max_bytes: int,
    image_tokens_default: int = IMAGE_TOKENS,
) -> Estimate:
    """Prompt and completion tokens of a /v1/completions request: every prompt of a batch, and
    the completion limit for each choice (`choices`)."""
    counter = TextCounter(enc, tokenize_max_bytes)
    prompt = body.get("prompt")
    # An absent prompt means <|endoftext|>, one token.
    tokens = 1 if prompt is None else _input_tokens(counter, prompt, "prompt")
    suffix = body.get("suffix")
    if suffix is not None:
        # Each prompt of a batch is completed with the suffix after it.
        tokens += counter.count(expect_str(suffix, "suffix")) * batch_size(prompt)
    limit = completion_limit(body, "completions")
    completion = (default_max_tokens if limit is None else limit) * choices(body, "completions")
    return Estimate(tokens, completion)


def estimate_embeddings(
    body: Mapping[str, Any],
    enc: Tokenizer,
    *,
    default_max_tokens: int,
    tokenize_max_bytes: int,
    image_tokens_default: int = IMAGE_TOKENS,
) -> Estimate:
    """Input tokens of a /v1/embeddings request; embeddings produce no completion tokens.
    `default_max_tokens` is accepted so every endpoint has the same signature."""
    if body.get("input") is None:
        raise BadRequest(
            "'input' is required: a string, or an array of strings or tokens", param="input"
        )
    counter = TextCounter(enc, tokenize_max_bytes)
    return Estimate(_input_tokens(counter, body["input"], "input"), 0)


def choices(body: Mapping[str, Any], endpoint: EndpointName) -> int:
    """How many completions the provider generates and bills. Per prompt, max(n, best_of):
    `best_of` candidates are generated server-side and the best `n` returned (completions, and
    chat on servers that take it, such as vLLM). On completions, a batch of prompts (a list of
    strings or of token lists) gets that many for each prompt. None on embeddings; one on the
    Responses and Messages APIs."""
    if endpoint == "embeddings":
        return 0
    if endpoint in ("responses", "messages"):
        return 1
    n, best_of = _count(body, "n"), _count(body, "best_of")
    if best_of > 1 and body.get("stream") is True:
        raise BadRequest(
            f"'best_of' ({best_of}) generates candidates server-side and returns the best: its "
            "results cannot be streamed. Leave out 'stream' or 'best_of'.",
            param="best_of",
        )
    prompts = batch_size(body.get("prompt")) if endpoint == "completions" else 1
    return max(n, best_of) * prompts


def batch_size(prompt: Any) -> int:
    """The prompts a completions `prompt` holds: a list of strings or of token lists is a batch,
    one completion set for each; a string, or a list of token ids, is one prompt."""
    if not isinstance(prompt, list):
        return 1
    if not prompt:
        raise BadRequest(
            "'prompt' is an empty array: send a string, or an array of at least one prompt.",
            param="prompt",
        )
    return 1 if all(_is_token(item) for item in prompt) else len(prompt)


def completion_limit(body: Mapping[str, Any], endpoint: EndpointName) -> int | None:
    """The completion limit the client asked for, or None: `max_output_tokens` on responses;
    `max_tokens` on completions and messages; on chat the smaller of `max_completion_tokens`
    and `max_tokens` (a client that sent both allowed no more than either); never on
    embeddings. A limit must be an integer of at least 1: 0 is no bound to an upstream that
    reads `max_completion_tokens or max_tokens`, or its default."""
    if endpoint == "embeddings":
        return None
    names = LIMIT_FIELDS[endpoint]
    limits = [v for v in (_int_field(body, name) for name in names) if v is not None]
    return min(limits) if limits else None


LIMIT_FIELDS: dict[EndpointName, tuple[str, ...]] = {
    "chat": ("max_completion_tokens", "max_tokens"),
    "completions": ("max_tokens",),
    "embeddings": (),
    "responses": ("max_output_tokens",),
    "messages": ("max_tokens",),
}
"""The completion-limit fields of each endpoint's API."""


_SHAPED_FIELDS = frozenset(
    {"role", "content", "name", "tool_call_id", "tool_calls", "function_call"}
)
"""The chat message fields counted by their shape; any other is counted by `other_fields`."""


def _message_tokens(counter: TextCounter, message: Any, path: str) -> int:
    if not isinstance(message, dict):
        raise BadRequest(f"{path} must be an object with 'role' and 'content'", param=path)
    tokens = TOKENS_PER_MESSAGE + counter.count(expect_str(message.get("role"), f"{path}.role"))
    tokens += _content_tokens(counter, message.get("content"), f"{path}.content")
    if message.get("name") is not None:
        tokens += TOKENS_PER_NAME + counter.count(expect_str(message["name"], f"{path}.name"))
    if message.get("tool_call_id") is not None:
        tokens += counter.count(expect_str(message["tool_call_id"], f"{path}.tool_call_id"))
    if message.get("tool_calls") is not None:
        tokens += _tool_calls_tokens(counter, message["tool_calls"], f"{path}.tool_calls")
    if message.get("function_call") is not None:
        tokens += _function_call_tokens(counter, message["function_call"], f"{path}.function_call")
    return tokens + other_fields(counter, message, _SHAPED_FIELDS)


def other_fields(counter: TextCounter, entry: Mapping[str, Any], shaped: frozenset[str]) -> int:
    """The tokens of `entry`'s fields outside `shaped`: a string by its tokens (an assistant
    turn's `refusal`: the provider counts every string field of a message), anything else by
    its JSON (a field forwarded with `request_fields: forward`; message_fields.py refuses the
    ones it does not know otherwise)."""
    tokens = 0
    for key, value in entry.items():
        if key in shaped or value is None:
            continue
        tokens += counter.count(value) if isinstance(value, str) else counter.count_json(value)
    return tokens


def _tool_calls_tokens(counter: TextCounter, tool_calls: Any, path: str) -> int:
    if not isinstance(tool_calls, list):
        raise BadRequest(f"{path} must be an array of tool calls", param=path)
    tokens = 0
    for i, call in enumerate(tool_calls):
        function = call.get("function") if isinstance(call, dict) else None
        tokens += _function_call_tokens(counter, function, f"{path}[{i}].function")
    return tokens


def _function_call_tokens(counter: TextCounter, function: Any, path: str) -> int:
    if not isinstance(function, dict):
        raise BadRequest(f"{path} must be an object with 'name' and 'arguments'", param=path)
    name = expect_str(function.get("name"), f"{path}.name")
    arguments = expect_str(function.get("arguments", ""), f"{path}.arguments")
    return TOKENS_PER_TOOL_CALL + counter.count(name) + counter.count(arguments)


def _content_tokens(counter: TextCounter, content: Any, path: str) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return counter.count(content)
    if not isinstance(content, list):
        raise BadRequest(f"{path} must be a string or an array of content parts", param=path)
    return sum(_part_tokens(counter, part, f"{path}[{i}]") for i, part in enumerate(content))


def _part_tokens(counter: TextCounter, part: Any, path: str) -> int:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise BadRequest(f"{path} must be an object with a string 'type'", param=path)
    kind = part["type"]
    if kind == "text":
        return counter.count(expect_str(part.get("text"), f"{path}.text"))
    if kind == "image_url":
        return _image_tokens(counter, part.get("image_url"), f"{path}.image_url")
    if kind == "input_audio":
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, dict) else None
        return input_audio_tokens(expect_str(data, f"{path}.input_audio.data"), path)
    # Other parts (file, refusal, ...) carry their payload inline: their JSON bounds them. A part
    # of another API's image type (forwarded with `request_fields: forward`) is still an image.
    return media_tokens(counter, part, path)


def _image_tokens(counter: TextCounter, image: Any, path: str) -> int:
    if isinstance(image, str):
        return counter.image(image, "auto")
    if not isinstance(image, dict) or not isinstance(image.get("url"), str):
        raise BadRequest(f"{path} must be an object with a string 'url'", param=path)
    check_detail(image.get("detail"), f"{path}.detail")
    return counter.image(image["url"], image.get("detail"))


def _definitions_tokens(counter: TextCounter, body: Mapping[str, Any]) -> int:
    """Tool and function definitions, a named tool choice, a JSON schema: all by their JSON,
    which is longer than the TypeScript-like form the model is shown."""
    tokens = sum(_tool_list_tokens(counter, body, key) for key in ("tools", "functions"))
    for key in ("tool_choice", "function_call"):
        if isinstance(body.get(key), dict):
            tokens += counter.count_json(body[key])
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        tokens += counter.count_json(response_format)
    return tokens


def _tool_list_tokens(counter: TextCounter, body: Mapping[str, Any], key: str) -> int:
    definitions = body.get(key)
    if definitions is None:
        return 0
    if not isinstance(definitions, list):
        raise BadRequest(f"'{key}' must be an array of definitions", param=key)
    return TOOLS_OVERHEAD + counter.count_json(definitions) if definitions else 0


def _input_tokens(counter: TextCounter, value: Any, param: str) -> int:
    """A str, list[str], list[int] or list[list[int]]: token arrays count one per element."""
    if isinstance(value, str):
        return counter.count(value)
    if not isinstance(value, list):
        raise BadRequest(
            f"'{param}' must be a string, or an array of strings or token ids", param=param
        )
    return sum(_input_item_tokens(counter, item, f"{param}[{i}]") for i, item in enumerate(value))


def _input_item_tokens(counter: TextCounter, item: Any, path: str) -> int:
    if isinstance(item, str):
        return counter.count(item)
    if _is_token(item):
        return 1
    if isinstance(item, list) and all(_is_token(token) for token in item):
        return len(item)
    raise BadRequest(
        f"{path} must be a string, a token id, or an array of token ids (integers)", param=path
    )


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count(body: Mapping[str, Any], key: str) -> int:
    value = _int_field(body, key)
    return 1 if value is None else value


def _int_field(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(
            f"'{key}' must be an integer of at least 1, got {describe(value)}", param=key
        )
    return value
