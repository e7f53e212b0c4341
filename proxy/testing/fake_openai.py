"""The OpenAI-format bodies, stream chunks and errors the fake upstream answers with, and what it
bills (fake_upstream.py). Chat completions and completions; fake_shapes.py has the Responses and
Anthropic ones."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from proxy.testing import fake_tokens

WORD = " hello"
"""One token in both cl100k_base and o200k_base."""


@dataclass
class Billed:
    endpoint: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    """Part of prompt_tokens."""
    cache_write_tokens: int = 0
    """Part of prompt_tokens: written to a 5-minute cache (OpenAI's writes too)."""
    reasoning_tokens: int = 0
    """Part of completion_tokens."""
    audio_prompt_tokens: int = 0
    """Part of prompt_tokens."""
    audio_completion_tokens: int = 0
    """Part of completion_tokens."""
    service_tier: str = "default"
    """The tier the call was served at (OpenAI's names; Anthropic's `standard` is `default`)."""
    tool_calls: dict[str, int] = field(default_factory=dict)
    """Hosted tool uses billed per call, by tool (code_interpreter: containers)."""
    tool_input_tokens: int = 0
    """Part of prompt_tokens: what the hosted tool calls added (search results)."""
    documents: int = 0
    """Document inputs billed (their tokens are part of prompt_tokens)."""
    long_context: bool = False
    """The prompt was above the long-context threshold: every token at long-context prices but
    audio ones, which keep their own price (fake_billing.py)."""
    cache_write_1h_tokens: int = 0
    """Part of prompt_tokens: written to a one-hour cache (Anthropic bills twice the input)."""
    cache_split_reported: bool = True
    """The usage report splits cache writes by TTL (`cache_creation`); False: only their total
    (`cache_creation_input_tokens`)."""
    cache_split_zeroed: bool = False
    """The report's split says 0/0 while its total holds the writes."""
    cache_writes_late: bool = False
    """A stream reports the writes only in its final `message_delta`, without the split."""


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def event(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def prompt_tokens(endpoint: str, body: dict[str, Any]) -> int:
    """What the fake bills for the prompt, by the providers' rules (fake_tokens.py), never by
    the proxy's estimate."""
    return fake_tokens.prompt_tokens(endpoint, body)


def prompts_in_batch(endpoint: str, body: dict[str, Any]) -> int:
    """Completions: a `prompt` that is a list of strings or of token lists is a batch, and each
    of its prompts gets its own choices; anything else is one prompt."""
    prompt = body.get("prompt")
    if endpoint != "completions" or not isinstance(prompt, list):
        return 1
    batch = [item for item in prompt if isinstance(item, str | list)]
    return len(batch) or 1


def count(value: Any) -> int:
    """A choice count as a server reads it: a positive integer, else 1 (a server refuses the
    rest; the proxy refuses them before they get here)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return 1


def usage(billed: Billed) -> dict[str, Any]:
    prompt, completion = billed.prompt_tokens, billed.completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": billed.cached_tokens,
            "audio_tokens": billed.audio_prompt_tokens,
            **written(billed),
        },
        "completion_tokens_details": {
            "reasoning_tokens": billed.reasoning_tokens,
            "audio_tokens": billed.audio_completion_tokens,
        },
    }


def written(billed: Billed) -> dict[str, int]:
    """`cache_write_tokens`, the detail OpenAI's newer models add, when the call wrote any."""
    return {"cache_write_tokens": billed.cache_write_tokens} if billed.cache_write_tokens else {}


def whole(endpoint: str, model: str, per_choice: int, n: int) -> dict[str, Any]:
    text = WORD * per_choice
    if endpoint == "chat":
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": "length",
                "logprobs": None,
            }
            for i in range(n)
        ]
        kind = "chat.completion"
    else:
        choices = [
            {"index": i, "text": text, "finish_reason": "length", "logprobs": None}
            for i in range(n)
        ]
        kind = "text_completion"
    return {
        "id": f"fake-{time.monotonic_ns()}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }


def failed(answer: dict[str, Any], error: dict[str, Any]) -> dict[str, Any]:
    """A whole chat or completions answer that failed inside a 200, as OpenRouter writes one:
    its choices end in `finish_reason: error`, `error` beside its usage."""
    choices = [{**choice, "finish_reason": "error"} for choice in answer["choices"]]
    return {**answer, "choices": choices, "error": error}


def chunk(endpoint: str, model: str, index: int, text: str, last: bool) -> dict[str, Any]:
    finish = "length" if last else None
    if endpoint == "chat":
        choice: dict[str, Any] = {
            "index": index,
            "delta": {"content": text},
            "finish_reason": finish,
            "logprobs": None,
        }
        kind = "chat.completion.chunk"
    else:
        choice = {"index": index, "text": text, "finish_reason": finish, "logprobs": None}
        kind = "text_completion"
    return {
        "id": "fake-stream",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }


def refuse_by_model(endpoint: str, body: dict[str, Any]) -> web.Response | None:
    """What OpenAI refuses by model: `max_tokens` on chat with an o-series or gpt-5 model."""
    if endpoint == "chat" and _REASONING.fullmatch(body["model"]) and "max_tokens" in body:
        return invalid(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
            "'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    return None


_REASONING = re.compile(r"(o\d|gpt-5)([-.].*)?")


def invalid(message: str, param: str, code: str) -> web.Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }
    return web.json_response(body, status=400)


def error(status: int, message: str, code: str | None) -> web.Response:
    body = {"error": {"message": message, "type": "server_error", "code": code, "param": None}}
    return web.json_response(body, status=status)
