"""Tokens → integer cost units, and amounts → what a person reads.

Prices are integer units per 1M tokens (`ModelPrice`, 1 USD = 10**8 units). The cost of a call is
`ceil((sum(tokens_k * price_k) * tier + sum(calls_t * fee_t) * 10**6) / 10**6)`, summed exactly
in integers (the tier factor as a fraction) and rounded once, upwards, so a call is never charged
less than its exact rational cost and never a whole unit more. The token prices are the model's,
or its long-context prices when the prompt is above their threshold; `tier` is the factor of the
service tier the call was served at (1 for the standard tier); `fee_t` is a hosted tool's price
per call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from proxy.core.types import UNITS_PER_USD
from proxy.metering.estimate import Estimate
from proxy.policy.prices import STANDARD_TIERS, ModelPrice

TOKENS_PER_PRICE = 10**6
"""Prices are quoted per this many tokens."""
USD_DECIMALS = 6
_UNITS_PER_SHOWN_DIGIT = UNITS_PER_USD // 10**USD_DECIMALS
_COUNTS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "audio_prompt_tokens",
    "audio_completion_tokens",
    "image_prompt_tokens",
    "image_completion_tokens",
    "cache_write_1h_tokens",
    "cache_write_unsplit_tokens",
)

log = logging.getLogger("cycles.pricing")
_ONE = Fraction(1)


def ceil_times(count: int, factor: Fraction | int | None) -> int:
    """`ceil(count * factor)` in integers (None: 1), without building a Fraction per call."""
    if factor is None:
        return count
    return -(-count * factor.numerator // factor.denominator)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a call used (or may use). `cached_tokens` (read from a cache),
    `cache_write_tokens` and `cache_write_1h_tokens` (written to a 5-minute and a one-hour
    cache, Anthropic; OpenAI's writes are 5-minute ones), `cache_write_unsplit_tokens`,
    `audio_prompt_tokens` and `image_prompt_tokens` are parts of
    `prompt_tokens`; `audio_completion_tokens` and
    `image_completion_tokens` are parts of `completion_tokens`, as are reasoning tokens (priced
    as output, so not kept apart). Each part is priced once, at its own price; the rest of each
    side is text."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    audio_prompt_tokens: int = 0
    audio_completion_tokens: int = 0
    image_prompt_tokens: int = 0
    image_completion_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_write_unsplit_tokens: int = 0
    """Cache writes whose TTL the usage does not say (it gave only their total, or a total above
    its split by TTL), charged at the longest TTL the call asked for."""
    service_tier: str | None = None
    """The service tier the provider says it served the call at; None: it did not say (the call
    is charged at the tier it was reserved at)."""
    tool_calls: tuple[tuple[str, int], ...] = ()
    """Hosted tool calls billed per call, by tool (`web_search`, ...; code_interpreter counts
    containers)."""

    def __post_init__(self) -> None:
        counts = [getattr(self, name) for name in _COUNTS] + [n for _, n in self.tool_calls]
        if min(counts) < 0:
            raise ValueError(f"token counts cannot be negative: {self}")
        if self.prompt_tokens < self.cached_tokens + self.cache_writes + self._prompt_media:
            raise ValueError(f"cached and media tokens are parts of prompt tokens: {self}")
        if self.completion_tokens < self.audio_completion_tokens + self.image_completion_tokens:
            raise ValueError(f"media tokens are parts of completion tokens: {self}")

    @property
    def cache_writes(self) -> int:
        return (
            self.cache_write_tokens + self.cache_write_1h_tokens + self.cache_write_unsplit_tokens
        )

    @property
    def _prompt_media(self) -> int:
        return self.audio_prompt_tokens + self.image_prompt_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def cost_units(price: ModelPrice, usage: Usage) -> int:
    """The cost of `usage` at `price` in integer units, rounded up once. A tier or tool the
    price does not list costs nothing here: `unpriced` names them, `settled_amounts` charges
    the reservation for them."""
    tier = tier_factor(price, usage)
    tokens = _tokens_times_million(_rates(price, usage), usage)
    fees = sum(n * price.tool_calls[tool].per_call for tool, n in _priced_tools(price, usage))
    numerator = tokens * tier.numerator + fees * TOKENS_PER_PRICE * tier.denominator
    return -(-numerator // (TOKENS_PER_PRICE * tier.denominator))


def _tokens_times_million(price: ModelPrice, usage: Usage) -> int:
    text_in = usage.prompt_tokens - usage.cached_tokens - usage.cache_writes
    text_in -= usage.audio_prompt_tokens + usage.image_prompt_tokens
    five, hour = usage.cache_write_tokens, usage.cache_write_1h_tokens
    if price.cache_ttl == "1h":
        hour += usage.cache_write_unsplit_tokens
    else:
        five += usage.cache_write_unsplit_tokens
    text_out = usage.completion_tokens - usage.audio_completion_tokens
    text_out -= usage.image_completion_tokens
    return (
        text_in * price.input
        + usage.cached_tokens * price.cached_input
        + five * price.five_write
        + hour * price.hour_write
        + usage.audio_prompt_tokens * _or(price.audio_input, price.input)
        + usage.image_prompt_tokens * _or(price.image_input, price.input)
        + text_out * price.output
        + usage.audio_completion_tokens * _or(price.audio_output, price.output)
        + usage.image_completion_tokens * _or(price.image_output, price.output)
    )


def _rates(price: ModelPrice, usage: Usage) -> ModelPrice:
    """`price`, with the long-context prices in place when the prompt is above their threshold
    (cache reads and writes are part of the prompt)."""
    long = price.long_context
    if long is None or usage.prompt_tokens <= long.above:
        return price
    return ModelPrice(
        price.name,
        long.input,
        long.cached_input,
        long.output,
        cache_write=long.cache_write,
        cache_write_1h=long.cache_write_1h,
        cache_ttl=price.cache_ttl,
        audio_input=price.audio_input,
        audio_output=price.audio_output,
        image_input=price.image_input,
        image_output=price.image_output,
    )


def served_tier(price: ModelPrice, usage: Usage) -> str | None:
    """The tier a usage is charged at: the one reported, else the one reserved; None for the
    standard tier."""
    tier = usage.service_tier if usage.service_tier is not None else price.tier
    return None if tier is None or tier in STANDARD_TIERS else tier


def tier_factor(price: ModelPrice, usage: Usage) -> Fraction:
    """What the served tier multiplies token prices by (1 for a tier the price lacks)."""
    tier = served_tier(price, usage)
    return _ONE if tier is None else price.service_tiers.get(tier, _ONE)


def _priced_tools(price: ModelPrice, usage: Usage) -> list[tuple[str, int]]:
    return [(tool, n) for tool, n in usage.tool_calls if tool in price.tool_calls]


def unpriced(price: ModelPrice, usage: Usage) -> list[str]:
    """What `usage` reports that `price` cannot price: a service tier, hosted tools."""
    missing = []
    tier = served_tier(price, usage)
    if tier is not None and tier not in price.service_tiers:
        missing.append(f"service_tier {tier!r}")
    missing += [
        f"{n} {tool} call(s)" for tool, n in usage.tool_calls if n and tool not in price.tool_calls
    ]
    return missing


def settled_amounts(price: ModelPrice, usage: Usage, reserved: Mapping[str, int]) -> dict[str, int]:
    """What a call whose provider reported `usage` is charged: its cost, or at least what was
    reserved when the report holds a billed dimension the policy does not price (logged at
    ERROR: the policy needs that price). Cache writes on a model without `cache_write` are
    charged at the provider's usual multiples of the input price, and logged."""
    charged = amounts(price, usage)
    if usage.cache_writes and price.cache_write is None:
        log.warning(
            "DEFAULTED CACHE WRITE PRICE: model %s reported %d cache write tokens, which the "
            "policy does not price; charged at 1.25x input (5 minutes) and 2x (one hour). Add "
            "cache_write to models.%s.",
            price.name,
            usage.cache_writes,
            price.name,
        )
    missing = unpriced(price, usage)
    if not missing:
        return charged
    log.error(
        "UNPRICED BILLED DIMENSION: model %s reported %s, which the policy does not price; "
        "charging at least the reservation. Add it to models.%s in the policy.",
        price.name,
        ", ".join(missing),
        price.name,
    )
    return {unit: max(amount, reserved.get(unit, 0)) for unit, amount in charged.items()}


def fit_rates(price: ModelPrice, usage: Usage) -> tuple[int, int]:
    """For a completion fitted to what remains: the units of everything but the completion
    (prompt, tier and tool fees; `usage` holds no completion), and the output price per 1M
    tokens with the tier applied, each rounded up, so the fitted amount still bounds the cost."""
    rates = _rates(price, usage)
    tier = tier_factor(price, usage)
    rest = cost_units(price, usage)
    return rest, -(-rates.output * tier.numerator // tier.denominator)


def _or(specific: int | None, general: int) -> int:
    return general if specific is None else specific


def amounts(price: ModelPrice, usage: Usage) -> dict[str, int]:
    """What the call costs in every unit a budget can be kept in."""
    return {"USD": cost_units(price, usage), "TOKENS": usage.total_tokens}


def usage_from_estimate(estimate: Estimate) -> Usage:
    """The estimate as a usage to reserve: nothing is assumed cached, so it prices high."""
    return Usage(estimate.prompt_tokens, estimate.completion_tokens)


def format_amount(amount: int, unit: str) -> str:
    """`amount` units for a header or a message: USD as dollars with six decimals, rounded
    toward minus infinity (a remaining budget is never overstated); counted units as integers."""
    if unit != "USD":
        return f"{amount} {unit}"
    shown = amount // _UNITS_PER_SHOWN_DIGIT
    sign = "-" if shown < 0 else ""
    dollars, fraction = divmod(abs(shown), 10**USD_DECIMALS)
    return f"{sign}{dollars}.{fraction:0{USD_DECIMALS}d} USD"
