"""Costs in integer units: one upward rounding per call, exact near the 2**52 ceiling."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import GPT_4O, TABLE, exact_cost, oracle, price

from proxy.core.types import MAX_AMOUNT, UNITS_PER_USD
from proxy.metering.estimate import Estimate
from proxy.metering.pricing import (
    Usage,
    amounts,
    ceil_times,
    cost_units,
    format_amount,
    usage_from_estimate,
)
from proxy.policy.prices import ModelPrice


@pytest.mark.parametrize(("p", "prompt", "cached", "completion", "expected"), TABLE)
def test_cost_table(
    p: ModelPrice, prompt: int, cached: int, completion: int, expected: int
) -> None:
    usage = Usage(prompt, completion, cached)
    assert cost_units(p, usage) == expected == oracle(p, usage)


prices = st.builds(price, st.integers(0, 10**12), st.integers(0, 10**12), st.integers(0, 10**12))


@st.composite
def usages(draw: st.DrawFn, max_tokens: int = 10**9) -> Usage:
    prompt = draw(st.integers(0, max_tokens))
    return Usage(prompt, draw(st.integers(0, max_tokens)), draw(st.integers(0, prompt)))


@given(prices, usages())
def test_cost_is_an_integer_never_below_exact_and_less_than_one_unit_above(
    p: ModelPrice, usage: Usage
) -> None:
    cost = cost_units(p, usage)
    assert type(cost) is int
    assert exact_cost(p, usage) <= cost < exact_cost(p, usage) + 1


@given(st.integers(1, 10**10), st.integers(MAX_AMOUNT - 10**6, MAX_AMOUNT + 10**6))
def test_costs_near_2_pow_52_are_exact(output_price: int, target: int) -> None:
    completion = target * 10**6 // output_price
    usage = Usage(0, completion)
    cost = cost_units(price(0, 0, output_price), usage)
    assert cost == oracle(price(0, 0, output_price), usage)
    assert type(cost) is int


def test_amount_one_below_2_pow_52_survives_exactly() -> None:
    usage = Usage(0, MAX_AMOUNT - 1)
    assert amounts(price(0, 0, 10**6), usage)["USD"] == MAX_AMOUNT - 1


def test_amounts_cover_every_unit() -> None:
    assert amounts(GPT_4O, Usage(1000, 500, 200)) == {
        "USD": oracle(GPT_4O, Usage(1000, 500, 200)),
        "TOKENS": 1500,
    }


def test_estimate_becomes_an_uncached_usage() -> None:
    assert usage_from_estimate(Estimate(10, 20)) == Usage(10, 20, 0)


@pytest.mark.parametrize(("prompt", "completion", "cached"), [(-1, 0, 0), (0, -1, 0), (1, 0, 2)])
def test_impossible_usage_is_refused(prompt: int, completion: int, cached: int) -> None:
    with pytest.raises(ValueError):
        Usage(prompt, completion, cached)


@pytest.mark.parametrize(
    ("amount", "unit", "text"),
    [
        (4_999_270_000, "USD", "49.992700 USD"),
        (0, "USD", "0.000000 USD"),
        (99, "USD", "0.000000 USD"),
        (100, "USD", "0.000001 USD"),
        (5 * UNITS_PER_USD, "USD", "5.000000 USD"),
        (-10_000, "USD", "-0.000100 USD"),
        (-1, "USD", "-0.000001 USD"),
        (-(5 * UNITS_PER_USD), "USD", "-5.000000 USD"),
        (MAX_AMOUNT - 1, "USD", "45035996.273704 USD"),
        (120_000, "TOKENS", "120000 TOKENS"),
        (-3, "TOKENS", "-3 TOKENS"),
        (480, "RISK_POINTS", "480 RISK_POINTS"),
    ],
)
def test_format_amount(amount: int, unit: str, text: str) -> None:
    assert format_amount(amount, unit) == text


@given(st.integers(-(MAX_AMOUNT - 1), MAX_AMOUNT - 1))
def test_usd_is_shown_rounded_toward_minus_infinity(amount: int) -> None:
    shown = Decimal(format_amount(amount, "USD").removesuffix(" USD")) * UNITS_PER_USD
    assert shown <= amount < shown + UNITS_PER_USD // 10**6


def test_ceil_times_is_the_exact_product_rounded_up_without_fractions() -> None:
    factors: list[Fraction | None] = [None, Fraction(1), Fraction(6, 5), Fraction(5667, 170)]
    factors += [Fraction(1, 3), Fraction(7, 2), Fraction(0)]
    for factor in factors:
        for count in (0, 1, 2, 3, 37, 38, 170, 5666, 10**12 + 7):
            expected = count if factor is None else math.ceil(count * factor)
            assert ceil_times(count, factor) == expected, (count, factor)
