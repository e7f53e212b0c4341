"""LiteLLM's `model_prices_and_context_window.json` → `Listing`s (catalogue.py).

An entry prices in USD per token: `input_cost_per_token`, `output_cost_per_token`,
`cache_read_input_token_cost`, `cache_creation_input_token_cost` (and `..._above_1hr` for a
one-hour write), `input_cost_per_audio_token`, `output_cost_per_reasoning_token`, ...; a
`_above_<N>k_tokens` suffix prices every token of a call whose prompt is above N thousand
tokens, a `_priority` / `_flex` suffix a service tier. Hosted tools: `search_context_cost_per_query`
(USD per web search, by search context size), `file_search_cost_per_1k_calls`,
`code_interpreter_cost_per_session` (a container). `sample_spec` documents the format and is
not a model. A fee every call pays (`input_cost_per_request`, `..._per_query`) leaves the model
out; any other field whose name says it is a price and that is none of these (batch prices,
per-character, per-image or per-second prices, ...) is reported, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from proxy.policy.catalogue import Listing, number

_KINDS: Mapping[str, str] = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "input_cost_per_audio_token": "audio_input",
    "output_cost_per_audio_token": "audio_output",
    "input_cost_per_image_token": "image_input",
    "output_cost_per_image_token": "image_output",
    "output_cost_per_reasoning_token": "reasoning",
}
_FIELD = re.compile(r"(?P<field>.+?)(?:_above_(?P<k>\d+)k_tokens)?(?:_(?P<tier>priority|flex))?")
_PRICED = re.compile(r"cost|price|pricing")
_NOT_MODELS = frozenset({"sample_spec"})
_PER_CALL = ("_per_request", "_per_query")
"""A price every call pays besides its tokens: the model is left out, or calls would be
under-recorded."""


def listings(data: Mapping[str, Any]) -> Iterator[Listing]:
    """Every model entry of a LiteLLM catalogue, as read."""
    for name, entry in data.items():
        if name in _NOT_MODELS:
            continue
        listing = Listing(name)
        if not isinstance(entry, dict):
            listing.refused = "the entry is not an object"
        else:
            for key, value in entry.items():
                if _PRICED.search(key):
                    _read(listing, key, value)
        yield listing


def _read(listing: Listing, key: str, value: object) -> None:
    if key == "search_context_cost_per_query":
        _web_search(listing, value)
        return
    price = number(value)
    if price is None:
        if value is not None:
            listing.unsaid.append(f"{key} is not a number")
        return
    if key == "file_search_cost_per_1k_calls":
        listing.tools["file_search"] = price.scaleb(-3)
    elif key == "code_interpreter_cost_per_session":
        listing.tools["code_interpreter"] = price
    elif key.endswith(_PER_CALL) and price:
        listing.refused = (
            f"a fee per request or query ({key}: {price:f}), which it has no price for"
        )
    elif not _token_price(listing, key, price) and price:
        listing.unsaid.append(f"{key} ({price:f})")


def _token_price(listing: Listing, key: str, price: Decimal) -> bool:
    """Files `key`'s price in `listing` if it is a per-token price of a kind the policy has."""
    found = _FIELD.fullmatch(key)
    kind = _KINDS.get(found["field"]) if found else None
    if found is None or kind is None:
        return False
    above = int(found["k"]) * 1000 if found["k"] else None
    if found["tier"]:
        tier_key = kind if above is None else f"{kind} above {above}"
        listing.tiers.setdefault(found["tier"], {})[tier_key] = price
    elif above is not None:
        listing.long.setdefault(above, {})[kind] = price
    else:
        listing.rates[kind] = price
    return True


def _web_search(listing: Listing, value: object) -> None:
    """One price per web search only if every search context size costs the same: the request
    names its size, and the policy has one price per tool."""
    sizes = value if isinstance(value, dict) else {}
    prices = {number(v) for v in sizes.values()}
    if len(prices) == 1 and None not in prices:
        (price,) = prices
        if price is not None:
            listing.tools["web_search"] = price
        return
    if any(prices - {None, Decimal(0)}):
        listing.unsaid.append(
            f"search_context_cost_per_query {_shown(sizes)}: web search costs differ by "
            "context size, and the policy has one price per tool; web_search left out"
        )


def _shown(sizes: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sizes.items()) + "}"
