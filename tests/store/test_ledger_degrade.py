# The ledger fixture is imported from ledger_support (on conftest's `opener`: every store);
# tests take it as an argument, which pyflakes reads as redefining the import.
# ruff: noqa: F811
"""The contract, continued: degrade candidates, their conditions and fits, on every store.

The fixtures and helpers are test_ledger_contract's, so these run on `memory://` and Redis too.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from conftest import EVERY_STORE
from hooks_support import quota_counters
from ledger_support import ask, book, ledger, line  # noqa: F401

from proxy.core.errors import AmountOutOfRange
from proxy.store.ledger.base import ALWAYS, Candidate, Condition, Fit, Ledger, Quotas

pytestmark = EVERY_STORE

NEVER = Condition("never")
NOT_FIT = Condition("not_fit")
MILLION = 10**6


def below(line_index: int, amount: int) -> Condition:
    return Condition("remaining_below", line_index, amount)


def fit(
    prompt_units: int = 0,
    prompt_tokens: int = 0,
    output: int = MILLION,
    choices: int = 1,
    floor: int = 1,
    ceiling: int = 1000,
) -> Fit:
    return Fit(prompt_units, prompt_tokens, output, choices, floor, ceiling)


def capped(f: Fit, units: tuple[str, ...] = ("USD",)) -> Candidate:
    """A fit candidate priced at its ceiling, as the caller would send it."""
    most = f.ceiling * f.choices
    at_ceiling = {
        "USD": f.prompt_units - (-most * f.output_per_million // MILLION),
        "TOKENS": f.prompt_tokens + most,
    }
    return Candidate({unit: at_ceiling[unit] for unit in units}, ALWAYS, f)


def outcome(result: Any) -> tuple[bool, bool, int, int | None]:
    return (result.allowed, result.would_allow, result.candidate, result.denied_by)


async def spend(ledger: Ledger, rid: str, amount: int, value: str = "acme") -> None:
    """Hold `amount` on the tenant line, so the next request sees less remaining."""
    assert (
        await ledger.reserve(ask(rid, [line(value=value, limit=10**9)], {"USD": amount}))
    ).allowed


# --- conditions ------------------------------------------------------------------------------


async def test_always_rule_wins_over_the_call_as_asked(ledger: Ledger) -> None:
    result = await ledger.reserve(ask("a", [line(limit=1000)], {"USD": 100}, {"USD": 60}))
    assert outcome(result) == (True, True, 1, None)
    assert await book(ledger) == {"tenant|acme|USD": (0, 60)}


async def test_never_rule_is_skipped(ledger: Ledger) -> None:
    never = Candidate({"USD": 60}, NEVER)
    result = await ledger.reserve(ask("a", [line(limit=1000)], {"USD": 100}, never))
    assert outcome(result) == (True, True, 0, None)
    assert await book(ledger) == {"tenant|acme|USD": (0, 100)}


async def test_remaining_below_holds_only_strictly_below(ledger: Ledger) -> None:
    lines = [line(limit=1000)]
    rule = Candidate({"USD": 10}, below(0, 500))
    await spend(ledger, "held", 500)
    at_threshold = await ledger.reserve(ask("a", lines, {"USD": 1}, rule))
    assert outcome(at_threshold) == (True, True, 0, None)
    under = await ledger.reserve(ask("b", lines, {"USD": 1}, rule))
    assert outcome(under) == (True, True, 1, None)
    assert await book(ledger) == {"tenant|acme|USD": (0, 511)}


async def test_remaining_below_measures_the_line_it_names(ledger: Ledger) -> None:
    lines = [line(limit=1000), line("run", "r1", limit=100, period="none")]
    on_run = Candidate({"USD": 10}, below(1, 100))
    on_tenant = Candidate({"USD": 10}, below(0, 100))
    assert (await ledger.reserve(ask("a", lines, {"USD": 50}, on_tenant))).candidate == 0
    assert (await ledger.reserve(ask("b", lines, {"USD": 20}, on_run))).candidate == 1


async def test_not_fit_rule_applies_only_when_the_call_as_asked_does_not_fit(
    ledger: Ledger,
) -> None:
    lines = [line(limit=100)]
    smaller = Candidate({"USD": 40}, NOT_FIT)
    asked = await ledger.reserve(ask("a", lines, {"USD": 100}, smaller))
    assert outcome(asked) == (True, True, 0, None)
    assert asked.reservation is not None
    await ledger.release(asked.reservation)
    result = await ledger.reserve(ask("b", lines, {"USD": 101}, smaller))
    assert outcome(result) == (True, True, 1, 0)
    assert await book(ledger) == {"tenant|acme|USD": (0, 40)}


async def test_a_held_rule_that_does_not_fit_blocks_the_call_as_asked(ledger: Ledger) -> None:
    lines = [line(limit=1000), line("workflow", "triage", limit=50)]
    result = await ledger.reserve(ask("a", lines, {"USD": 10}, {"USD": 70}))
    assert outcome(result) == (False, False, -1, 1)
    assert result.reservation is None
    assert await ledger.balances("acme") == []


async def test_first_held_rule_that_fits_wins_in_policy_order(ledger: Ledger) -> None:
    lines = [line(limit=100)]
    result = await ledger.reserve(
        ask(
            "a",
            lines,
            {"USD": 90},
            Candidate({"USD": 1}, below(0, 50)),
            Candidate({"USD": 300}, ALWAYS),
            Candidate({"USD": 30}, NOT_FIT),
            Candidate({"USD": 20}, ALWAYS),
            Candidate({"USD": 10}, ALWAYS),
        )
    )
    assert outcome(result) == (True, True, 4, 0)
    assert await book(ledger) == {"tenant|acme|USD": (0, 20)}


async def test_call_as_asked_marked_never_is_reserved_only_through_a_rule(ledger: Ledger) -> None:
    lines = [line(limit=100), line("agent", "bot", limit=30)]
    asked = Candidate({"USD": 5}, NEVER)
    alone = await ledger.reserve(ask("a", lines, asked))
    assert outcome(alone) == (False, False, -1, None)
    too_big = await ledger.reserve(ask("b", lines, Candidate({"USD": 500}, NEVER), {"USD": 40}))
    assert outcome(too_big) == (False, False, -1, 1)
    ok = await ledger.reserve(ask("c", lines, asked, {"USD": 7}))
    assert outcome(ok) == (True, True, 1, None)
    assert await book(ledger) == {"tenant|acme|USD": (0, 7), "agent|bot|USD": (0, 7)}


# --- fit -------------------------------------------------------------------------------------


def oracle(remaining: int, f: Fit) -> int:
    """An independent statement of the fitted completion length for one USD line."""
    return min(
        f.ceiling, (remaining - f.prompt_units) * MILLION // (f.output_per_million * f.choices)
    )


def widest(prompt_units: int, output: int, choices: int) -> Fit:
    """A fit whose ceiling is as high as the 2**52 bound on its amounts allows."""
    ceiling = min((2**52 - 1) // choices, (2**51 - prompt_units) * MILLION // (output * choices))
    return fit(prompt_units, 0, output, choices, floor=0, ceiling=ceiling)


def fit_cases() -> list[tuple[int, Fit]]:
    """(remaining, fit): hand-picked extremes, then random ones, about half of them limited by
    the remaining amount rather than the ceiling."""
    rng = random.Random(4)
    cases = [
        (1000, widest(100, 1_000_000, 1)),
        (10**8, widest(37_500, 1_000_000_000, 3)),
        (2**52 - 1, widest(12_345, 2**43 - 1, 1)),
        (2**52 - 1, widest(0, 2**42 - 12_345, 2)),
        (2**52 - 2, widest(0, 999_999, 7)),
        (2**51 + 17, widest(2**50, 1, 1)),
        (123_456_789_012, widest(1, 3, 5)),
    ]
    for _ in range(40):
        output = rng.randrange(1, 2**43)
        choices = rng.randrange(1, max(2, (2**43 - 1) // output))
        remaining = rng.randrange(0, 2**52)
        cases.append((remaining, widest(rng.randrange(0, remaining // 4 + 1), output, choices)))
    return cases


async def test_fitted_tokens_match_the_oracle_exactly(ledger: Ledger) -> None:
    for i, (remaining, f) in enumerate(fit_cases()):
        lines = [line("agent", f"a{i}", limit=remaining)]
        result = await ledger.reserve(ask(f"r{i}", lines, Candidate({"USD": 1}, NEVER), capped(f)))
        expected = oracle(remaining, f)
        assert result.fitted == expected, (remaining, f)
        assert result.reservation is not None
        usd = result.reservation.amounts["USD"]
        assert usd == f.prompt_units - (-expected * f.choices * f.output_per_million // MILLION)
        assert 0 <= result.lines[0].remaining == remaining - usd


async def test_fit_reserves_amounts_recomputed_from_the_fitted_tokens(ledger: Ledger) -> None:
    f = fit(prompt_units=250, prompt_tokens=100, output=2_000_000, choices=2, ceiling=4096)
    lines = [line(limit=10_000), line("run", "r1", unit="TOKENS", limit=10**6, period="none")]
    result = await ledger.reserve(
        ask("a", lines, {"USD": 99_999, "TOKENS": 1}, capped(f, ("USD", "TOKENS")))
    )
    # (10_000 - 250) * 10**6 / (2_000_000 * 2) = 2437.5 tokens per choice
    assert (result.candidate, result.fitted) == (1, 2437)
    assert result.reservation is not None
    assert result.reservation.amounts == {"USD": 250 + 9748, "TOKENS": 100 + 2 * 2437}
    assert [s.remaining for s in result.lines] == [2, 10**6 - 4974]


async def test_fit_takes_the_tightest_line_of_either_unit(ledger: Ledger) -> None:
    f = fit(prompt_units=0, prompt_tokens=50, output=MILLION, choices=3, ceiling=10**6)
    lines = [line(limit=9000), line("run", "r1", unit="TOKENS", limit=650, period="none")]
    result = await ledger.reserve(
        ask("a", lines, Candidate({"USD": 1, "TOKENS": 1}, NEVER), capped(f, ("USD", "TOKENS")))
    )
    assert result.fitted == (650 - 50) // 3
    assert result.reservation is not None
    assert result.reservation.amounts == {"USD": 600, "TOKENS": 650}


async def test_fit_is_capped_at_its_ceiling(ledger: Ledger) -> None:
    f = fit(output=MILLION, ceiling=256)
    result = await ledger.reserve(ask("a", [line(limit=10**9)], {"USD": 1}, capped(f)))
    assert (result.candidate, result.fitted) == (1, 256)
    assert result.reservation is not None and result.reservation.amounts == {"USD": 256}


async def test_fit_ignores_a_line_when_output_is_free(ledger: Ledger) -> None:
    f = fit(prompt_units=10, output=0, ceiling=300)
    result = await ledger.reserve(
        ask("a", [line(limit=10)], Candidate({"USD": 1}, NEVER), capped(f))
    )
    assert (result.allowed, result.fitted) == (True, 300)
    assert result.reservation is not None and result.reservation.amounts == {"USD": 10}


async def test_fit_below_its_floor_does_not_fit_and_the_next_rule_is_tried(
    ledger: Ledger,
) -> None:
    lines = [line(limit=1_000)]
    await spend(ledger, "held", 901)
    # 99 units left: 99 tokens at 1 unit each, below a floor of 100
    floored = capped(fit(output=MILLION, floor=100, ceiling=1000))
    alone = await ledger.reserve(ask("a", lines, Candidate({"USD": 500}, NEVER), floored))
    assert outcome(alone) == (False, False, -1, 0) and alone.fitted is None
    at_floor = capped(fit(output=MILLION, floor=99, ceiling=1000))
    result = await ledger.reserve(
        ask("b", lines, Candidate({"USD": 500}, NEVER), floored, at_floor)
    )
    assert (result.candidate, result.fitted) == (2, 99)
    assert result.lines[0].remaining == 0


async def test_fit_never_reserves_when_the_prompt_alone_does_not_fit(ledger: Ledger) -> None:
    f = capped(fit(prompt_units=101, output=MILLION, floor=0, ceiling=10))
    result = await ledger.reserve(ask("a", [line(limit=100)], Candidate({"USD": 1}, NEVER), f))
    assert outcome(result) == (False, False, -1, 0)
    assert await ledger.balances("acme") == []


async def test_fit_checks_other_units_at_their_given_amounts(ledger: Ledger) -> None:
    lines = [line(limit=1000), line("agent", "bot", unit="RISK_POINTS", limit=5)]
    f = fit(output=MILLION, ceiling=100)
    risky = Candidate({"USD": 100, "RISK_POINTS": 6}, ALWAYS, f)
    safe = Candidate({"USD": 100, "RISK_POINTS": 5}, ALWAYS, f)
    asked = {"USD": 1, "RISK_POINTS": 1}
    assert outcome(await ledger.reserve(ask("a", lines, asked, risky))) == (False, False, -1, 1)
    result = await ledger.reserve(ask("b", lines, asked, safe))
    assert result.reservation is not None
    assert result.reservation.amounts == {"USD": 100, "RISK_POINTS": 5}


async def test_repeated_reserve_returns_the_same_fit(ledger: Ledger) -> None:
    request = ask("a", [line(limit=777)], Candidate({"USD": 1}, NEVER), capped(fit(ceiling=10**4)))
    first = await ledger.reserve(request)
    again = await ledger.reserve(request)
    assert first.fitted == again.fitted == 777
    assert again.reservation == first.reservation
    assert await book(ledger) == {"tenant|acme|USD": (0, 777)}


# --- shadow ----------------------------------------------------------------------------------


async def test_shadow_reports_the_would_be_rule_and_fit_but_reserves_the_call_as_asked(
    ledger: Ledger,
) -> None:
    f = capped(fit(output=MILLION, ceiling=1000))
    request = ask(
        "a", [line(limit=300)], {"USD": 500}, Candidate({"USD": 1}, below(0, 10)), f, shadow=True
    )
    result = await ledger.reserve(request)
    assert outcome(result) == (True, True, 2, 0)
    assert result.fitted == 300
    assert result.reservation is not None and result.reservation.amounts == {"USD": 500}
    assert await book(ledger) == {"tenant|acme|USD": (0, 500)}


async def test_shadow_reserves_the_call_as_asked_when_nothing_would_fit(ledger: Ledger) -> None:
    result = await ledger.reserve(ask("a", [line(limit=50)], {"USD": 80}, {"USD": 60}, shadow=True))
    assert outcome(result) == (True, False, 0, 0)
    assert result.fitted is None
    assert await book(ledger) == {"tenant|acme|USD": (0, 80)}


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "error", "match"),
    [
        ([Candidate({"USD": 1}, below(0, 5))], ValueError, "candidate 0"),
        ([Candidate({"USD": 1}, ALWAYS, fit())], ValueError, "candidate 0"),
        ([Candidate({"USD": 1}), Candidate({"USD": 1}, below(1, 5))], ValueError, "line 1"),
        (
            [Candidate({"USD": 1}), Candidate({"USD": 1}, below(0, 2**52))],
            AmountOutOfRange,
            "2\\*\\*52",
        ),
        (
            [Candidate({"USD": 1}), Candidate({"USD": 1}, Condition("sometimes"))],
            ValueError,
            "sometimes",
        ),  # type: ignore[arg-type]
        ([Candidate({"USD": 1}), capped(fit(output=2**43))], AmountOutOfRange, "2\\*\\*43"),
        (
            [Candidate({"USD": 1}), capped(fit(output=2**42, choices=2))],
            AmountOutOfRange,
            "2\\*\\*43",
        ),
        ([Candidate({"USD": 1}), capped(fit(choices=0))], AmountOutOfRange, "choices"),
        ([Candidate({"USD": 1}), capped(fit(floor=-1))], AmountOutOfRange, "floor"),
        ([Candidate({"USD": 1}), capped(fit(floor=20, ceiling=10))], ValueError, "floor"),
        (
            [
                Candidate({"USD": 1}),
                Candidate({"USD": 1}, ALWAYS, fit(output=2**40, ceiling=2**40)),
            ],
            AmountOutOfRange,
            "USD at fit.ceiling",
        ),
        (
            [Candidate({"USD": 1}), Candidate({"USD": 1}, ALWAYS, fit(prompt_tokens=2**52 - 1))],
            AmountOutOfRange,
            "TOKENS at fit.ceiling",
        ),
        ([Candidate({"USD": 1}), Candidate({"USD": 2**52})], AmountOutOfRange, "candidate 1"),
    ],
)
async def test_bad_candidates_are_refused_before_the_store(
    ledger: Ledger, candidates: list[Candidate], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        await ledger.reserve(ask("a", [line()], *candidates))
    assert await ledger.balances("acme") == []


@pytest.mark.parametrize(
    ("quotas", "run", "match"),
    [
        (Quotas(concurrent=[("tenant", "acme", -1)]), None, "concurrent_requests"),
        (Quotas(concurrent=[("tenant", "a|b", 1)]), None, "concurrency scope"),
        (Quotas(runs_per_day=2**52), "r1", "runs_per_day"),
        (Quotas(steps_per_run=-1), "r1", "steps_per_run"),
        (Quotas(requests_per_minute=0), None, "requests_per_minute"),
        (Quotas(tokens_per_minute=0), None, "tokens_per_minute"),
        (Quotas(requests_per_minute=2**43), None, "2\\*\\*43"),
        (Quotas(tokens_per_minute=10), None, "TOKENS amount on candidate 0"),
        (Quotas(rates=[("user", "a|b", 1)]), None, "rate scope"),
        (Quotas(rates=[("user", "u1", 0)]), None, "requests_per_minute of user u1"),
        (Quotas(), "run 1", "run id"),
    ],
)
async def test_bad_quotas_are_refused_before_the_store(
    ledger: Ledger, quotas: Quotas, run: str | None, match: str
) -> None:
    with pytest.raises((ValueError, AmountOutOfRange), match=match):
        await ledger.reserve(ask("a", [line()], run=run, quotas=quotas))
    assert await quota_counters(ledger, "acme") == {}


async def test_scope_level_q_is_reserved_for_quota_counters(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="'q' is reserved"):
        await ledger.reserve(ask("a", [line("q", "conc")]))
