"""Kinds of tokens a provider reports apart and prices apart: cached, cache-write, audio and
image tokens. No I/O.

OpenAI's `usage` breaks its totals down: `prompt_tokens_details` has `cached_tokens`,
`cache_write_tokens` (newer models, which bill prompt-cache writes at the model's write price),
`audio_tokens` (and, on some servers, `image_tokens`); `completion_tokens_details` has
`reasoning_tokens`, `audio_tokens` (and `image_tokens`). Every detail is a *part* of its total.
Reasoning tokens are billed at the output price like the visible text, so they stay inside
`completion_tokens` and are never added again; audio and image parts are priced at the model's
`audio_*` / `image_*` prices (pricing.py), the text part being the total minus them.

An estimate cannot know how a prompt splits, so a call that carries audio or images, or asks for
audio back, is priced at the dearer of the text and media prices, and an OpenAI prompt (any
prompt may be written to the cache) at the dearer of the input and write prices: the policy's
`cache_write`, or the default a write is charged at without one (`estimate_price`). Media
tokens keep their own price above a long-context threshold too, so the long-context input and
output prices are raised alike: the reservation stays an upper bound on what the provider can
bill at any prompt size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from proxy.metering.pricing import Usage
from proxy.policy.prices import ModelPrice

_DERIVED: dict[tuple[int, Hashable], tuple[ModelPrice, ModelPrice]] = {}
_DERIVED_MAX = 4096


def derived(price: ModelPrice, key: Hashable, make: Callable[[], ModelPrice]) -> ModelPrice:
    """`make()`, a price derived from `price` (which policy prices are: built once per policy
    version), remembered by `price`'s identity and `key`: a call would otherwise copy the
    policy's 20-field price once or twice to reserve. The cache holds `price` itself, so its
    id is not reused while remembered; it is emptied past `_DERIVED_MAX` entries (each policy
    version adds a few per model)."""
    found = _DERIVED.get((id(price), key))
    if found is not None:
        return found[1]
    if len(_DERIVED) >= _DERIVED_MAX:
        _DERIVED.clear()
    made = make()
    _DERIVED[(id(price), key)] = (price, made)
    return made


def openai_usage(usage: Mapping[str, Any], prompt: int, completion: int) -> Usage:
    """`prompt` and `completion` tokens with the parts the details report, each clamped to
    what is left of its total (a detail is never trusted above it)."""
    asked = _details(usage, "prompt_tokens_details")
    made = _details(usage, "completion_tokens_details")
    cached = min(_count(asked, "cached_tokens"), prompt)
    written = min(_count(asked, "cache_write_tokens"), prompt - cached)
    audio_in = min(_count(asked, "audio_tokens"), prompt - cached - written)
    image_in = min(_count(asked, "image_tokens"), prompt - cached - written - audio_in)
    audio_out = min(_count(made, "audio_tokens"), completion)
    image_out = min(_count(made, "image_tokens"), completion - audio_out)
    return Usage(
        prompt,
        completion,
        cached,
        written,
        audio_prompt_tokens=audio_in,
        audio_completion_tokens=audio_out,
        image_prompt_tokens=image_in,
        image_completion_tokens=image_out,
    )


def with_service_tier(usage: Usage | None, tier: Any) -> Usage | None:
    """`usage` with the service tier an OpenAI answer reports (its top-level `service_tier`)."""
    if usage is None or not isinstance(tier, str):
        return usage
    return dataclasses.replace(usage, service_tier=tier)


WRITES_CACHE = frozenset({"chat", "responses"})
"""Endpoints whose provider may write any prompt to its cache and bill it (OpenAI's)."""


def estimate_price(price: ModelPrice, body: Mapping[str, Any], endpoint: str) -> ModelPrice:
    """The price an estimate of `body` (on `endpoint`) is reserved at: `price`, with input and
    output raised to the media and cache-write prices the request may be billed at."""
    if endpoint in WRITES_CACHE:
        # Any prompt may be written and billed; without a cache_write in the policy the writes
        # are charged at the default (ModelPrice.five_write), so they are reserved at it too.
        price = derived(price, "writes", lambda: _with_writes(price, price.five_write))
    if _no_media_prices(price):
        return price
    parts = _part_types(body)
    dearer_in = []
    if "input_audio" in parts and price.audio_input is not None:
        dearer_in.append(price.audio_input)
    if "image_url" in parts and price.image_input is not None:
        dearer_in.append(price.image_input)
    dearer_out = []
    modalities = body.get("modalities")
    if isinstance(modalities, list) and "audio" in modalities and price.audio_output is not None:
        dearer_out.append(price.audio_output)
    if price.image_output is not None:
        dearer_out.append(price.image_output)
    media = (tuple(dearer_in), tuple(dearer_out))
    return derived(price, media, lambda: _with_media(price, dearer_in, dearer_out))


def _with_writes(price: ModelPrice, write: int) -> ModelPrice:
    """`price` with every prompt token at least at the cache-write price (and above the
    long-context threshold, at least at the long-context write price)."""
    long = price.long_context
    if long is not None:
        long = dataclasses.replace(long, input=max(long.input, long.five_write))
    return dataclasses.replace(price, input=max(price.input, write), long_context=long)


def _with_media(price: ModelPrice, inputs: list[int], outputs: list[int]) -> ModelPrice:
    """`price` with every prompt token at least at each of the media prices `inputs` and every
    completion token at least at each of `outputs`, at any prompt size: media tokens keep their
    own price above the long-context threshold (pricing._rates), so the long-context input and
    output are raised as well."""
    long = price.long_context
    if long is not None:
        long_input, long_output = max([long.input, *inputs]), max([long.output, *outputs])
        long = dataclasses.replace(long, input=long_input, output=long_output)
    return dataclasses.replace(
        price,
        input=max([price.input, *inputs]),
        output=max([price.output, *outputs]),
        long_context=long,
    )


def _no_media_prices(price: ModelPrice) -> bool:
    media = (price.audio_input, price.audio_output, price.image_input, price.image_output)
    return all(p is None for p in media)


def _part_types(body: Mapping[str, Any]) -> set[str]:
    """The content part types of a chat request's messages (malformed ones are the estimate's
    to refuse)."""
    found: set[str] = set()
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            found.update(p["type"] for p in content if isinstance(p, dict) and "type" in p)
    return {kind for kind in found if isinstance(kind, str)}


def _details(usage: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    found = usage.get(name)
    return found if isinstance(found, dict) else {}


def token_count(value: Any) -> int | None:
    """`value` if it is a token count (a non-negative integer, not a boolean), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _count(details: Mapping[str, Any], name: str) -> int:
    return token_count(details.get(name)) or 0
