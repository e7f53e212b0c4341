"""Per-model request rules: what a model's API accepts, applied to the body that goes upstream.
No I/O.

**Completion limit field.** OpenAI's reasoning models (o1, o3, o4-mini, ...) and the gpt-5 family
refuse `max_tokens` on chat completions: they take `max_completion_tokens`, which also bounds the
hidden reasoning tokens. Some OpenAI-compatible servers are the other way round (they know only
`max_tokens`). A model's price entry may say which one it takes (`limit_field:`); without it the
name decides (`REQUIRES_COMPLETION_FIELD`), and other models take whichever the client sent.

When the proxy writes or rewrites a limit it uses the model's field, and a client's limit in the
field the model refuses is **moved** to the one it takes rather than refused: the number the
client chose stays the bound (for a reasoning model it then also covers reasoning, which is what
the provider bills, so the reservation is still an upper bound), and clients written for older
models keep working. Exactly one limit field goes up: a client that sent both gets the smaller
in the model's field, since servers differ in which one they read (vLLM reads
`max_completion_tokens or max_tokens`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import orjson

LimitField = Literal["max_tokens", "max_completion_tokens"]

REQUIRES_COMPLETION_FIELD = re.compile(r"(o\d|gpt-5)([-.].*)?")
"""Model names that take only `max_completion_tokens` unless their price entry says otherwise:
the o-series (o1, o3-mini, o4-mini-2025-04-16, ...) and gpt-5 (gpt-5, gpt-5-mini, ...)."""


def default_limit_field(model: str) -> LimitField | None:
    """The field `model` takes by its name; None: either."""
    return "max_completion_tokens" if REQUIRES_COMPLETION_FIELD.fullmatch(model) else None


def chat_limit_field(body: Mapping[str, Any], required: LimitField | None) -> LimitField:
    """For a chat body: the field a limit is written in (every other limit field is taken out).

    A model with a `required` field gets its limit there. A model that takes either keeps the
    client's choice (`max_tokens` if that is all it sent); a limit the proxy adds goes in
    `max_completion_tokens`."""
    if required is not None:
        return required
    sent_old_only = body.get("max_tokens") is not None and body.get("max_completion_tokens") is None
    return "max_tokens" if sent_old_only else "max_completion_tokens"


def reasons_by_name(model: str) -> bool | None:
    """Whether `model` may bill reasoning it does not stream, by its name: True for the o-series
    and gpt-5 (the families REQUIRES_COMPLETION_FIELD names), None for the rest: only when the
    request enables thinking (`hides_reasoning`)."""
    return True if REQUIRES_COMPLETION_FIELD.fullmatch(model) else None


def hides_reasoning(reasoning: bool | None, body: bytes) -> bool:
    """Whether a call may have billed reasoning tokens that its stream never showed: the model's
    `reasoning` flag when the policy or its name sets one, else whether the request body enables
    thinking (Anthropic's `thinking: {type: enabled}`, which Claude bills as output whether its
    stream shows the thinking whole, summarised or not at all)."""
    if reasoning is not None:
        return reasoning
    if b'"thinking"' not in body:
        return False
    try:
        thinking = orjson.loads(body).get("thinking")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled")
