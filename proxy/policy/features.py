"""A model's prices beyond its tokens, as written → their runtime form: service tiers, hosted
tools, long-context prices, documents, the tool prompt and Anthropic's client tools.

Everything a provider may bill a call for must be priced here or the call is refused
(proxy/metering/billable_reserve.py), so each field checks that the reservation it leads to stays an
upper bound: a long-context price below the normal one, or a tier named like the standard one, is
an error.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

from proxy.policy.prices import (
    CLAUDE_CLIENT_TOOL_TOKENS,
    CLAUDE_TOOL_PROMPT_TOKENS,
    FIVE_MINUTE_WRITE,
    STANDARD_TIERS,
    LongContext,
    ToolFee,
    snapshot_of,
)
from proxy.policy.spec_models import DocumentsSpec, LongContextSpec, ModelSpec, ToolFeeSpec
from proxy.policy.units import USD_PLACES, AmountError, to_units

Loc = tuple[str | int, ...]
Report = Callable[[Loc, str], None]


def compile_features(name: str, model: ModelSpec, report: Report) -> dict[str, Any]:
    """The `ModelPrice` fields priced apart from tokens, by name."""
    loc: Loc = ("models", name)
    return {
        "service_tiers": _tiers((*loc, "service_tiers"), model.service_tiers, report),
        "tool_calls": {
            tool: _tool((*loc, "tool_calls", tool), fee, report)
            for tool, fee in model.tool_calls.items()
        },
        "long_context": _long_context((*loc, "long_context"), model, report),
        "document_tokens": _documents((*loc, "documents"), model.documents, report),
        "tool_prompt_tokens": _tool_prompt(name, model),
        "image_token_factor": image_factor(name, model),
        "client_tool_tokens": _client_tools(name, model),
    }


def _tiers(loc: Loc, tiers: dict[str, Decimal], report: Report) -> dict[str, Fraction]:
    for tier in tiers:
        if tier in STANDARD_TIERS or tier == "auto":
            report(
                (*loc, tier),
                f"{tier!r} is not a tier to price: default/standard/standard_only are the "
                "model's own prices, and auto reserves the dearest tier listed here",
            )
    return {tier: Fraction(factor) for tier, factor in tiers.items()}


def _tool(loc: Loc, spec: ToolFeeSpec, report: Report) -> ToolFee:
    per_call = _usd(spec.per_call, (*loc, "per_call"), ("per_call", "USD"), report)
    return ToolFee(per_call, spec.input_tokens)


def _long_context(loc: Loc, model: ModelSpec, report: Report) -> LongContext | None:
    spec: LongContextSpec | None = model.long_context
    if spec is None:
        return None
    normal = _effective(model.input, model.cached_input, model.cache_write, model.cache_write_1h)
    long = _effective(spec.input, spec.cached_input, spec.cache_write, spec.cache_write_1h)
    for kind, (above, given) in {**long, "output": (spec.output, True)}.items():
        below = normal[kind][0] if kind in normal else model.output
        if above >= below:
            continue
        said = f"{above} is" if given else f"not given, and its default ({above}) is"
        fix = "" if given else f" Write it out, at least {below}."
        report(
            (*loc, kind),
            f"{said} below the model's {kind} ({below}): long-context prices are a premium, and "
            "the reservation of a call just above the threshold must cover the same call priced "
            f"normally.{fix}",
        )
    what = "price", "USD per 1M tokens"
    long_input = _usd(spec.input, (*loc, "input"), what, report)
    cached = spec.cached_input
    write = spec.cache_write
    hour = spec.cache_write_1h
    return LongContext(
        above=spec.above,
        input=long_input,
        cached_input=long_input
        if cached is None
        else _usd(cached, (*loc, "cached_input"), what, report),
        output=_usd(spec.output, (*loc, "output"), what, report),
        cache_write=None if write is None else _usd(write, (*loc, "cache_write"), what, report),
        cache_write_1h=None if hour is None else _usd(hour, (*loc, "cache_write_1h"), what, report),
    )


def _effective(
    input_price: Decimal, cached: Decimal | None, write: Decimal | None, hour: Decimal | None
) -> dict[str, tuple[Decimal, bool]]:
    """The prices a model (or its long-context tier) charges, each with whether it was written
    out: defaults as ModelPrice applies them (cached reads at the input price, a 5-minute write
    at 1.25 times it, a one-hour write at twice it and never below the 5-minute one)."""
    five = input_price * Decimal(FIVE_MINUTE_WRITE.numerator) / FIVE_MINUTE_WRITE.denominator
    five = five if write is None else write
    return {
        "input": (input_price, True),
        "cached_input": (input_price if cached is None else cached, cached is not None),
        "cache_write": (five, write is not None),
        "cache_write_1h": (max(2 * input_price, five) if hour is None else hour, hour is not None),
    }


def _documents(loc: Loc, spec: DocumentsSpec | None, report: Report) -> int | None:
    if spec is None:
        return None
    paged = spec.tokens_per_page is not None or spec.pages is not None
    if spec.tokens_per_file is not None and not paged:
        return spec.tokens_per_file
    if spec.tokens_per_file is None and spec.tokens_per_page is not None and spec.pages is not None:
        return spec.tokens_per_page * spec.pages
    report(
        loc,
        "give either tokens_per_file, or tokens_per_page with pages (the most pages a document "
        "may have): e.g. {tokens_per_file: 30000} or {tokens_per_page: 1500, pages: 100}",
    )
    return None


def _tool_prompt(name: str, model: ModelSpec) -> int:
    if model.tool_prompt_tokens is not None:
        return model.tool_prompt_tokens
    return CLAUDE_TOOL_PROMPT_TOKENS if name.startswith("claude") else 0


PUBLISHED_IMAGE_FACTORS: dict[str, Fraction] = {
    # OpenAI's "Calculating costs" for vision: 85 + 170 a 512-px tile, the rule itself.
    **dict.fromkeys(
        ("gpt-4o", "chatgpt-4o-latest", "gpt-4.1", "gpt-4.5-preview", "gpt-4-turbo"), Fraction(1)
    ),
    # 70 + 140 (gpt-5), 75 + 150 (o1, o3), 65 + 129 (computer use): within the rule.
    **dict.fromkeys(
        ("gpt-5", "gpt-5-chat-latest", "o1", "o1-pro", "o3", "computer-use-preview"), Fraction(1)
    ),
    # 2833 + 5667 a tile: 5667 / 170 times the rule bounds both.
    "gpt-4o-mini": Fraction(5667, 170),
    # Anthropic's vision guide: w × h / 750 tokens, images scaled to at most ~1.15 megapixels,
    # so at most 1,600 an image (the Messages API's rule, shapes/messages.py) up to Claude 4.6.
    **dict.fromkeys(
        (
            *("claude-3-haiku", "claude-3-sonnet", "claude-3-opus", "claude-3-opus-latest"),
            *("claude-3-5-sonnet", "claude-3-5-sonnet-latest", "claude-3-5-haiku"),
            *("claude-3-5-haiku-latest", "claude-3-7-sonnet", "claude-3-7-sonnet-latest"),
            *("claude-sonnet-4", "claude-sonnet-4-0", "claude-opus-4", "claude-opus-4-0"),
            *("claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5"),
            *("claude-sonnet-4-6", "claude-opus-4-6"),
        ),
        Fraction(1),
    ),
    # Claude Opus 4.7 reads images up to 2576 px on the long edge (~3.75 megapixels): ⌈w/28⌉ ×
    # ⌈h/28⌉ tokens, at most 92 × 52 = 4,784 an image.
    "claude-opus-4-7": Fraction(4784, 1600),
}
"""The image factor of the models whose image rule is published, by their names (or the name a
dated snapshot extends): OpenAI's over gpt-4o's tiles, Claude's over 1,600 tokens an image.
Others (patch-priced models such as gpt-4.1-mini, any self-hosted one, a Claude model released
after this table) have none: the policy must say, or their image inputs are refused."""


def published_image_factor(name: str) -> Fraction | None:
    """The image factor published for the model `name` (or the model its dated snapshot
    extends), if any."""
    return PUBLISHED_IMAGE_FACTORS.get(snapshot_of(name) or name)


def image_factor(name: str, model: ModelSpec) -> Fraction | None:
    """The model's `image_token_factor`, else its published one, else None (images refused)."""
    if model.image_token_factor is not None:
        return Fraction(model.image_token_factor)
    return published_image_factor(name)


def _client_tools(name: str, model: ModelSpec) -> dict[str, int]:
    published = CLAUDE_CLIENT_TOOL_TOKENS if name.startswith("claude") else {}
    return {**published, **model.client_tool_tokens}


def _usd(value: Decimal, loc: Loc, what: tuple[str, str], report: Report) -> int:
    try:
        return to_units(value, USD_PLACES, *what)
    except AmountError as exc:
        report(loc, str(exc))
        return 0
