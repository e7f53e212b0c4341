"""Which candidate a reserve takes: degrade conditions, fits, and fitted completion lengths.

Pure Python on exact ints, used by the memory store; lua/candidates.lua makes the same choice
with the same numbers (its long division keeps every double below 2**53). Everything is measured
before this reservation:

    for each degrade rule (candidates[1:]) in order, if its condition holds:
        a `fit` rule is chosen when the fitted tokens reach `fit.floor`,
        any other rule when its amounts fit every line
    the call as asked (candidate 0) only when no rule's condition held, it is not `never`,
    and it fits every line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.core.types import MAX_AMOUNT
from proxy.store.ledger.base import Amounts, Candidate, Condition, Fit

Lines = Sequence[tuple[str, int]]
"""(unit, remaining) per request line, in request order."""


@dataclass(frozen=True, slots=True)
class Choice:
    index: int | None
    """The chosen candidate, or None when none applies and fits."""
    amounts: dict[str, int]
    """What the chosen candidate reserves (recomputed for a fit); empty when none."""
    fitted: int | None
    denied_by: int | None
    """See ReserveResult.denied_by."""


def choose(candidates: Sequence[Candidate], lines: Lines) -> Choice:
    asked = candidates[0]
    asked_miss = misfit(asked.amounts, lines)
    first_held_miss: int | None = None
    held_any = False
    for index, candidate in enumerate(candidates[1:], start=1):
        if not _holds(candidate.condition, lines, asked_miss is None):
            continue
        amounts, fitted, miss = _attempt(candidate, lines)
        if not held_any:
            first_held_miss, held_any = miss, True
        if miss is None:
            return Choice(index, amounts, fitted, _denied(asked, asked_miss, first_held_miss))
    denied = _denied(asked, asked_miss, first_held_miss)
    if not held_any and asked.condition.kind != "never" and asked_miss is None:
        return Choice(0, dict(asked.amounts), None, denied)
    return Choice(None, {}, None, denied)


def misfit(amounts: Amounts, lines: Lines) -> int | None:
    """Index of the first line these amounts do not fit, or None when they fit all."""
    return next(
        (i for i, (unit, remaining) in enumerate(lines) if amounts.get(unit, 0) > remaining), None
    )


def _denied(asked: Candidate, asked_miss: int | None, held_miss: int | None) -> int | None:
    if asked.condition.kind != "never" and asked_miss is not None:
        return asked_miss
    return held_miss


def _holds(condition: Condition, lines: Lines, asked_fits: bool) -> bool:
    if condition.kind == "remaining_below":
        return lines[condition.line][1] < condition.amount
    if condition.kind == "not_fit":
        return not asked_fits
    return condition.kind == "always"


def _attempt(candidate: Candidate, lines: Lines) -> tuple[dict[str, int], int | None, int | None]:
    """(amounts, fitted tokens, first line missed) of one applicable candidate."""
    fit = candidate.fit
    if fit is None:
        return dict(candidate.amounts), None, misfit(candidate.amounts, lines)
    fitted, miss = fit.ceiling, None
    for i, (unit, remaining) in enumerate(lines):
        tokens = line_tokens(fit, unit, remaining)
        if tokens is None:
            tokens = fit.ceiling if candidate.amounts.get(unit, 0) <= remaining else -1
        if tokens < fit.floor and miss is None:
            miss = i
        fitted = min(fitted, tokens)
    if miss is not None:
        return {}, fitted, miss
    return fit_amounts(candidate.amounts, fit, fitted), fitted, None


def line_tokens(fit: Fit, unit: str, remaining: int) -> int | None:
    """Completion tokens per choice that still fit one line (-1 when not even the prompt does);
    None for a unit a fit does not compute (its amount is taken as it is)."""
    if unit == "USD":
        spare = remaining - fit.prompt_units
        if spare < 0:
            return -1
        if fit.output_per_million == 0:
            return fit.ceiling
        tokens = min(spare, MAX_AMOUNT - 1) * 10**6 // (fit.output_per_million * fit.choices)
        return min(fit.ceiling, tokens)
    if unit == "TOKENS":
        spare = remaining - fit.prompt_tokens
        if spare < 0:
            return -1
        return min(fit.ceiling, min(spare, MAX_AMOUNT - 1) // fit.choices)
    return None


def fit_amounts(amounts: Amounts, fit: Fit, fitted: int) -> dict[str, int]:
    """The candidate's amounts with USD and TOKENS recomputed for `fitted` tokens per choice."""
    out = dict(amounts)
    generated = fitted * fit.choices
    if "USD" in out:
        out["USD"] = fit.prompt_units - (-generated * fit.output_per_million // 10**6)
    if "TOKENS" in out:
        out["TOKENS"] = fit.prompt_tokens + generated
    return out
