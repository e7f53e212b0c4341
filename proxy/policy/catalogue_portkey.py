"""Portkey's open pricing data (one `pricing/<provider>.json` per provider) → `Listing`s.

Portkey prices in US CENTS per token (its README: `0.00025` is $2.50 per 1M), and per call for
hosted tools (`web_search: 1` is $0.01). An entry's `pricing_config.pay_as_you_go` has
`request_token`, `response_token`, `cache_read_input_token`, `cache_write_input_token`,
`request_audio_token`, ... each `{"price": cents}`, and `additional_units` (`web_search`,
`file_search`, Anthropic's `cache_write_1h`, Google's `thinking_token`, ...).
`custom_pricing.regions.default.execution_modes` prices the service tiers (`priority`, `flex`)
and, with `custom_pricing.context_tier_map` (`{"0": "lte-272k", "272000": "gt-272k"}`), the
prompt sizes above a threshold. The `default` entry is the provider's template, not a model.
Batch prices, regional prices, image and video prices are reported, never guessed; an entry
with a cost formula of its own (`calculate`) or a fee per request (`fixed_cost`) is left out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from proxy.policy.catalogue import Listing, number

_KINDS: Mapping[str, str] = {
    "request_token": "input",
    "response_token": "output",
    "cache_read_input_token": "cached_input",
    "cache_write_input_token": "cache_write",
    "cache_write_1h": "cache_write_1h",
    "request_audio_token": "audio_input",
    "response_audio_token": "audio_output",
    "request_image_token": "image_input",
    "response_image_token": "image_output",
    "thinking_token": "reasoning",
    "reasoning_token": "reasoning",
}
_TOOLS = frozenset({"web_search", "file_search"})
_TIERS = frozenset({"priority", "flex"})
CENTS = -2
"""Portkey's prices are cents: the decimal point moves two places to give USD."""


def listings(data: Mapping[str, Any]) -> Iterator[Listing]:
    """Every model entry of a Portkey pricing file, as read."""
    for name, entry in data.items():
        if name == "default":
            continue
        listing = Listing(name)
        config = _object(entry, "pricing_config")
        if not isinstance(entry, dict) or not config:
            listing.refused = "no pricing_config"
        else:
            _config(listing, config)
            _custom(listing, _object(entry, "custom_pricing"))
        yield listing


def _object(parent: object, key: str) -> dict[str, Any]:
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


def _config(listing: Listing, config: Mapping[str, Any]) -> None:
    if "calculate" in config:
        listing.refused = "its own cost formula (`calculate`), which the policy cannot follow"
    for key in config:
        if key == "fixed_cost" and _any_price(config[key]):
            listing.refused = "a fee per request (fixed_cost), which the policy has no price for"
        elif key not in {"pay_as_you_go", "currency", "calculate"}:
            listing.unsaid.append(f"pricing_config.{key} (the policy has no such price)")
    currency = config.get("currency", "USD")
    if currency != "USD":
        listing.refused = f"prices in {currency}, not USD"
    listing.rates.update(_rates(listing, _object(config, "pay_as_you_go"), tools=True))


def _any_price(fees: object) -> bool:
    """True if `fees` (`{"request": {"price": 0.5}, "response": {"price": 0}}`) has a price
    other than 0, or one that is not a number."""
    prices = fees.values() if isinstance(fees, dict) else [fees]
    return any(number(fee.get("price")) != 0 if isinstance(fee, dict) else True for fee in prices)


def _rates(listing: Listing, prices: Mapping[str, Any], *, tools: bool) -> dict[str, Decimal]:
    """`pay_as_you_go` prices by kind, in USD; its hosted tools go to `listing` if `tools`."""
    found: dict[str, Decimal] = {}
    units = _object(prices, "additional_units")
    for key, value in [*prices.items(), *units.items()]:
        if key == "additional_units":
            continue
        price = number(value.get("price")) if isinstance(value, dict) else None
        if price is None:
            listing.unsaid.append(f"{key} (not one price)")
        elif key in _KINDS:
            found[_KINDS[key]] = price.scaleb(CENTS)
        elif key in _TOOLS:
            if tools:
                listing.tools[key] = price.scaleb(CENTS)
        elif price and tools:
            listing.unsaid.append(f"{key} ({price:f} cents)")
    return found


def _custom(listing: Listing, custom: Mapping[str, Any]) -> None:
    """Service tiers and long-context prices, from the default region's execution modes."""
    regions = _object(custom, "regions")
    others = sorted(r for r in regions if r != "default")
    if others:
        listing.unsaid.append(f"regional prices ({'; '.join(others)})")
    modes = _object(_object(regions, "default"), "execution_modes")
    tiers = {_threshold(listing, k): str(v) for k, v in _object(custom, "context_tier_map").items()}
    for mode, spec in modes.items():
        if mode == "standard":
            for above, rates in _by_size(listing, spec, tiers).items():
                if above:
                    listing.long[above] = rates
        elif mode in _TIERS:
            priced = _by_size(listing, spec, tiers)
            listing.tiers[mode] = {
                kind if not above else f"{kind} above {above}": price
                for above, rates in priced.items()
                for kind, price in rates.items()
            }
        else:
            listing.unsaid.append(f"execution mode {mode!r}")


def _threshold(listing: Listing, key: str) -> int:
    if key.isdigit():
        return int(key)
    listing.refused = f"context_tier_map has {key!r}, not a number of tokens"
    return 0


def _by_size(
    listing: Listing, mode: Mapping[str, Any], tiers: Mapping[int, str]
) -> dict[int, dict[str, Decimal]]:
    """A mode's prices by the prompt size they start above (0: every size)."""
    sized = _object(mode, "context_tiers")
    if not sized:
        prices = _object(_object(mode, "pricing_config"), "pay_as_you_go")
        return {0: _rates(listing, prices, tools=False)}
    found = {}
    for above, tier in tiers.items():
        prices = _object(_object(_object(sized, tier), "pricing_config"), "pay_as_you_go")
        if prices:
            found[above] = _rates(listing, prices, tools=False)
    return found
