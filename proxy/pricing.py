"""Tokens → integer cost units, and amounts → what a person reads.

Prices are integer units per 1M tokens (`ModelPrice`, 1 USD = 10**8 units). The cost of a call is
`ceil(sum(tokens_k * price_k) / 10**6)`, summed exactly in integers and rounded once, upwards, so a
call is never charged less than its exact rational cost and never a whole unit more.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.estimate import Estimate
from proxy.policy.runtime import UNITS_PER_USD, ModelPrice

TOKENS_PER_PRICE = 10**6
"""Prices are quoted per this many tokens."""
USD_DECIMALS = 6
_UNITS_PER_SHOWN_DIGIT = UNITS_PER_USD // 10**USD_DECIMALS


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a call used (or may use). `cached_tokens` (read from a cache),
    `cache_write_tokens` (written to one, Anthropic), `audio_prompt_tokens` and
    `image_prompt_tokens` are parts of `prompt_tokens`; `audio_completion_tokens` and
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

    def __post_init__(self) -> None:
        if min(getattr(self, name) for name in self.__slots__) < 0:
            raise ValueError(f"token counts cannot be negative: {self}")
        if self.prompt_tokens < self.cached_tokens + self.cache_write_tokens + self._prompt_media:
            raise ValueError(f"cached and media tokens are parts of prompt tokens: {self}")
        if self.completion_tokens < self.audio_completion_tokens + self.image_completion_tokens:
            raise ValueError(f"media tokens are parts of completion tokens: {self}")

    @property
    def _prompt_media(self) -> int:
        return self.audio_prompt_tokens + self.image_prompt_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def cost_units(price: ModelPrice, usage: Usage) -> int:
    """The cost of `usage` at `price` in integer units, rounded up once."""
    text_in = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
    text_in -= usage.audio_prompt_tokens + usage.image_prompt_tokens
    text_out = usage.completion_tokens - usage.audio_completion_tokens
    text_out -= usage.image_completion_tokens
    exact_times_million = (
        text_in * price.input
        + usage.cached_tokens * price.cached_input
        + usage.cache_write_tokens * _or(price.cache_write, price.input)
        + usage.audio_prompt_tokens * _or(price.audio_input, price.input)
        + usage.image_prompt_tokens * _or(price.image_input, price.input)
        + text_out * price.output
        + usage.audio_completion_tokens * _or(price.audio_output, price.output)
        + usage.image_completion_tokens * _or(price.image_output, price.output)
    )
    return -(-exact_times_million // TOKENS_PER_PRICE)


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
