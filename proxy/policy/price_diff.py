"""A policy's model prices against a catalogue's (`cycles-proxy prices diff`).

Both sides are compared in their runtime form (integer units, catalogue.py's entries compiled
by the same compiler as the policy), so `2.5` and `"2.50"` are equal, and a price left to its
default equals the same price written out. Only what a catalogue can price is compared: token
prices, cache writes, media prices, service tier factors, hosted tool fees per call and the
long-context tier; what only an operator can say (documents, tokenizer factor, ...) is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from fractions import Fraction

from proxy.policy.catalogue import Imported, selected, text
from proxy.policy.prices import LongContext, ModelPrice
from proxy.policy.schema import compile_policy
from proxy.policy.units import USD_PLACES

DIFFERS, MISSING, ABSENT = "differs", "missing", "absent"
"""A price that differs; a catalogue model the policy does not price; a policy model the
catalogue does not list."""
NONE = "none"
"""How a price one side does not have is shown."""


def price_diff(
    catalogue: Iterable[Imported], models: Mapping[str, ModelPrice], globs: tuple[str, ...]
) -> list[tuple[str, str, str]]:
    """(category, model, what) for every difference between `catalogue` and the policy's
    `models`, both limited to the models `globs` select. A catalogue model the policy does not
    price is listed only when `globs` name models: a whole catalogue is thousands of them."""
    listed = {model.name: model for model in catalogue if selected(model.name, globs)}
    found: list[tuple[str, str, str]] = []
    for name in sorted(n for n in models if selected(n, globs)):
        model = listed.get(name)
        if model is None:
            found.append((ABSENT, name, "priced in the policy, not in the catalogue"))
        elif model.entry is None:
            why = f"the catalogue's entry cannot be imported: {model.refused}"
            found.append((DIFFERS, name, why))
        else:
            found += [(DIFFERS, name, line) for line in _fields(models[name], _compiled(model))]
    if globs:
        for name in sorted(set(listed) - set(models)):
            if listed[name].entry is not None:
                found.append((MISSING, name, "in the catalogue, not priced in the policy"))
    return found


def unpriced_count(catalogue: Iterable[Imported], models: Mapping[str, ModelPrice]) -> int:
    """How many importable catalogue models the policy does not price."""
    return sum(1 for m in catalogue if m.entry is not None and m.name not in models)


def _compiled(model: Imported) -> ModelPrice:
    return compile_policy({"models": {model.name: model.entry}}).models[model.name]


def _fields(policy: ModelPrice, catalogue: ModelPrice) -> list[str]:
    ours, theirs = comparable(policy), comparable(catalogue)
    found = []
    for key in sorted(ours.keys() | theirs.keys(), key=_order):
        mine, other = _shown(ours, key), _shown(theirs, key)
        if mine != other:
            found.append(f"{key}: policy {mine}, catalogue {other}")
    return found


_MEDIA_DEFAULTS = {
    "audio_input": "input",
    "audio_output": "output",
    "image_input": "input",
    "image_output": "output",
}
"""A media price not given is its text price."""


def _shown(prices: Mapping[str, str], key: str) -> str:
    return prices.get(key) or prices.get(_MEDIA_DEFAULTS.get(key, ""), NONE)


_ORDER = ("input", "cached_input", "cache_write", "cache_write_1h", "output")


def _order(key: str) -> tuple[int, str]:
    head = key.split(".")[0]
    return (_ORDER.index(head) if head in _ORDER else len(_ORDER), key)


def comparable(price: ModelPrice) -> dict[str, str]:
    """What a catalogue can say of `price`, each as shown: USD per 1M tokens (per call for a
    hosted tool), tier factors as decimals; a price left to its default is the default (a
    media price not given is left out: `_shown` reads its text price)."""
    shown = {
        "input": _usd(price.input),
        "cached_input": _usd(price.cached_input),
        "output": _usd(price.output),
    }
    for kind in _MEDIA_DEFAULTS:
        value = getattr(price, kind)
        if value is not None:
            shown[kind] = _usd(value)
    if price.cache_write is not None:
        shown["cache_write"] = _usd(price.cache_write)
        shown["cache_write_1h"] = _usd(price.hour_write)
    shown |= {f"service_tiers.{t}": _factor(f) for t, f in price.service_tiers.items()}
    shown |= {f"tool_calls.{t}": _usd(fee.per_call) for t, fee in price.tool_calls.items()}
    if price.long_context is not None:
        shown |= _long(price.long_context)
    return shown


def _long(long: LongContext) -> dict[str, str]:
    hour = long.cache_write_1h
    return {
        "long_context.above": str(long.above),
        "long_context.input": _usd(long.input),
        "long_context.cached_input": _usd(long.cached_input),
        "long_context.cache_write": _usd(long.five_write),
        "long_context.cache_write_1h": _usd(
            max(2 * long.input, long.five_write) if hour is None else hour
        ),
        "long_context.output": _usd(long.output),
    }


def _usd(units: int) -> str:
    return text(Decimal(units).scaleb(-USD_PLACES), 0)


def _factor(factor: Fraction) -> str:
    return f"{(Decimal(factor.numerator) / factor.denominator).normalize():f}"
