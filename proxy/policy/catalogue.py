"""Public price catalogues (LiteLLM's, Portkey's) → the policy's `models:` entries, exactly.

A format's reader (catalogue_litellm.py, catalogue_portkey.py) turns each catalogue entry into
a `Listing`: USD per token of each kind the policy prices, per prompt-size threshold and per
service tier, and USD per hosted tool call, all `Decimal` as the JSON wrote them (the JSON is
parsed with `parse_float=Decimal`, so 2.5e-06 is never a binary float). `build` turns a listing
into a `models:` entry of per-1M decimal strings (moving a decimal point is exact) and keeps
only what maps exactly: a service tier becomes a factor only when every price it lists is the
same multiple of the standard one; a model whose prices the policy cannot hold (several
long-context thresholds, reasoning dearer than output) is left out, so that no imported price
under-records a call. Each entry is checked by the real policy compiler before it is written.
What the catalogue says that the policy cannot is returned as notes, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fnmatch import fnmatchcase
from fractions import Fraction
from typing import Any

from proxy.core.errors import CatalogueError
from proxy.policy.issues import PolicyIssues
from proxy.policy.schema import compile_policy

TOKEN_KINDS: tuple[str, ...] = (
    "input",
    "cached_input",
    "cache_write",
    "cache_write_1h",
    "output",
    "audio_input",
    "audio_output",
    "image_input",
    "image_output",
)
"""The per-token prices a `models:` entry has, in the order they are written."""
CACHE_KINDS: tuple[str, ...] = ("cached_input", "cache_write", "cache_write_1h")
"""The prices a long-context tier has besides input and output."""
NO_TOKEN_PRICES = "no per-token input and output prices"
"""Why an image, speech or rerank model's entry is left out."""


@dataclass
class Listing:
    """One catalogue entry as read, in USD: per token, or per call for hosted tools."""

    name: str
    rates: dict[str, Decimal] = field(default_factory=dict)
    """By kind (TOKEN_KINDS, and `reasoning`)."""
    long: dict[int, dict[str, Decimal]] = field(default_factory=dict)
    """Prompt-size threshold → the prices of every token of a call above it."""
    tiers: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    """Service tier → its prices, by kind, or `kind above N` for a long-context one."""
    tools: dict[str, Decimal] = field(default_factory=dict)
    """Hosted tool → USD per call."""
    unsaid: list[str] = field(default_factory=list)
    """What the entry prices that the policy cannot say."""
    refused: str | None = None
    """Why the entry cannot be a policy price at all."""


@dataclass(frozen=True)
class Imported:
    """A catalogue entry as a `models:` entry, or None (left out, `refused` says why), and
    what the catalogue says of it that the policy cannot."""

    name: str
    entry: dict[str, Any] | None
    notes: tuple[str, ...]
    refused: str | None = None


def parse_json(text: str, shown: str) -> dict[str, Any]:
    """A catalogue file's JSON, every number a Decimal as written. Raises CatalogueError."""
    try:
        data = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except ValueError as exc:
        raise CatalogueError(f"{shown}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogueError(f"{shown}: the top level must be an object of models by name")
    return data


def number(value: object) -> Decimal | None:
    """`value` if the JSON wrote a number (not a boolean, string or null), else None."""
    return value if isinstance(value, Decimal) and value.is_finite() else None


def patterns(text: str | None) -> tuple[str, ...]:
    """`--models 'gpt-4o*,claude-*'` → its globs; None or empty: every model."""
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


def selected(name: str, globs: Iterable[str]) -> bool:
    """True if `name` matches one of `globs` (case-sensitive), or `globs` is empty."""
    wanted = tuple(globs)
    return not wanted or any(fnmatchcase(name, glob) for glob in wanted)


def build(listing: Listing) -> Imported:
    """The `models:` entry for `listing`, checked by the policy compiler, with notes."""
    notes = list(listing.unsaid)
    refused = listing.refused
    if refused is None and not {"input", "output"} <= listing.rates.keys():
        refused = NO_TOKEN_PRICES
    if refused is None:
        refused = _reasoning(listing, notes)
    if refused is None and len(listing.long) > 1:
        thresholds = ", ".join(str(t) for t in sorted(listing.long))
        refused = f"prices above several prompt sizes ({thresholds}); the policy has one"
    if refused is not None:
        return Imported(listing.name, None, tuple(notes), refused)
    entry = _tokens(listing.rates, notes)
    if listing.long:
        entry["long_context"] = _long(listing, entry)
    tiers = _tiers(listing, notes)
    if tiers:
        entry["service_tiers"] = tiers
    if listing.tools:
        entry["tool_calls"] = {tool: text(usd, 0) for tool, usd in sorted(listing.tools.items())}
    problems = _problems(listing.name, entry)
    if problems:
        return Imported(listing.name, None, tuple(notes), problems)
    return Imported(listing.name, entry, tuple(notes))


def _reasoning(listing: Listing, notes: list[str]) -> str | None:
    """Reasoning tokens are billed at the output price here: a dearer reasoning price would be
    under-recorded, so the model is refused; a cheaper one is only noted (over-recorded)."""
    reasoning, output = listing.rates.get("reasoning"), listing.rates.get("output")
    if reasoning is None or output is None or reasoning == output:
        return None
    per_m = f"reasoning tokens at {text(reasoning)} USD per 1M, output at {text(output)}"
    if reasoning > output:
        return f"{per_m}: the policy prices reasoning as output"
    notes.append(f"{per_m}: charged at the output price")
    return None


def _tokens(rates: Mapping[str, Decimal], notes: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {kind: text(rates[kind]) for kind in TOKEN_KINDS if kind in rates}
    for kind in ("cache_write", "cache_write_1h"):
        if kind in rates and rates[kind] < rates["input"]:
            notes.append(
                f"{kind} {text(rates[kind])} is below the input price {text(rates['input'])} "
                "(a placeholder, or writes billed as input): left out, so cache_control is "
                "refused and reported writes are charged above the input price"
            )
            del entry[kind]
    return entry


def _long(listing: Listing, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The one long-context tier. An input or output price it does not list is the model's own
    (as the catalogues apply it); a cache price it does not list is left to the policy's
    default, a multiple of the long-context input price, never below the model's own."""
    ((above, rates),) = listing.long.items()
    long: dict[str, Any] = {"above": above}
    for kind in ("input", *CACHE_KINDS, "output"):
        if kind in rates:
            long[kind] = text(rates[kind])
        elif kind in ("input", "output"):
            long[kind] = entry[kind]
    return long


def _tiers(listing: Listing, notes: list[str]) -> dict[str, str]:
    factors: dict[str, str] = {}
    for tier, rates in sorted(listing.tiers.items()):
        factor, why = _factor(listing, rates)
        if factor is None:
            notes.append(f"service tier {tier!r} left out (calls asking for it are refused): {why}")
        else:
            factors[tier] = factor
    return factors


def _factor(listing: Listing, rates: Mapping[str, Decimal]) -> tuple[str | None, str]:
    """The one factor that takes every standard price to the tier's, as a decimal string."""
    if not {"input", "output"} <= rates.keys():
        return None, "it lists no input and output prices"
    ratios: set[Fraction] = set()
    for key, value in rates.items():
        kind, _, above = key.partition(" above ")
        base = listing.long.get(int(above), {}) if above else listing.rates
        if kind not in base:
            return None, f"it prices {key} and the standard tier does not"
        if base[kind] == 0:
            if value:
                return None, f"it prices {key}, which is free at the standard tier"
            continue
        ratios.add(Fraction(value) / Fraction(base[kind]))
    if len(ratios) != 1:
        shown = ", ".join(str(r) for r in sorted(ratios))
        return None, f"its prices are not one multiple of the standard ones ({shown})"
    ratio = max(ratios)
    factor = _fraction_text(ratio)
    if factor is None or not 0 < ratio <= 100:
        return None, f"its factor {ratio} is not a decimal in (0, 100]"
    return factor, ""


def _fraction_text(value: Fraction) -> str | None:
    """`value` as an exact decimal string, or None when it does not terminate (1/3)."""
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
        if places > 30:
            return None
    whole = value * 10**places
    return f"{Decimal(whole.numerator).scaleb(-places).normalize():f}"


def text(usd: Decimal, scale: int = 6) -> str:
    """USD per token (scale 6: per 1M) or per call (scale 0) as the policy's decimal string,
    exactly: 2.5e-06 → "2.50", 7.5e-08 → "0.075", 0.01 per call → "0.01"."""
    scaled = usd.scaleb(scale).normalize()
    exponent = scaled.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -2:
        scaled = scaled.quantize(Decimal("0.01"))
    return f"{scaled:f}"


def _problems(name: str, entry: Mapping[str, Any]) -> str:
    """What the policy compiler says of `entry` ('' when it loads)."""
    try:
        compile_policy({"models": {name: entry}})
    except PolicyIssues as exc:
        return "; ".join(f"{'.'.join(map(str, i.loc[2:]))}: {i.message}" for i in exc.issues)
    return ""


def render(imported: Iterable[Imported], source: str) -> str:
    """The `models:` block of the imported entries, under a comment naming `source`."""
    lines = [*HEADER.format(source=source).splitlines(), "models:"]
    for model in imported:
        if model.entry is None:
            continue
        lines.append(f"  {_key(model.name)}:")
        for key, value in model.entry.items():
            lines.append(f"    {key}: {_value(value)}")
    return "\n".join(lines) + "\n"


HEADER = """\
# Prices imported by `cycles-proxy prices import` from
#   {source}.
# USD per 1M tokens (hosted tools: per call), converted exactly from the catalogue's prices.
# Only what the catalogue prices is written. It has no `documents`, `image_token_factor`,
# `client_tool_tokens` or tool `input_tokens`, so until you add them the proxy refuses what
# needs them (document inputs; image inputs on models without a published image rule; client
# tools beyond the published ones) as it refuses service tiers and hosted tools a model does
# not list here, and cache_control on a model without cache_write."""


def _key(name: str) -> str:
    plain = name[:1].isalpha() and all(c.isalnum() or c in "._-/" for c in name)
    return (
        name
        if plain and name.lower() not in {"true", "false", "null", "yes", "no"}
        else (json.dumps(name))
    )


def _value(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)}: {_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)
