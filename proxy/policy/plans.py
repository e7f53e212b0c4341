"""A plan's quotas and degrade rules, as written → their runtime form, with cross-checks.

Degrade rules may only name scope levels the plan budgets (their condition measures that
budget's remaining amount) and priced models; a `models` quota must match some priced model, and
a rule that answers `model_not_allowed` must lead to an allowed model.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Literal, NamedTuple

from proxy.policy.mcp import tool_glob_problem
from proxy.policy.runtime import LEVELS, Budget, DegradeRule, PlanQuotas
from proxy.policy.spec import DegradeSpec, QuotasSpec, WhenSpec
from proxy.policy.units import USD_PLACES, AmountError, to_units

Loc = tuple[str | int, ...]
Report = Callable[[Loc, str], None]


def compile_quotas(
    loc: Loc,
    spec: QuotasSpec,
    models: Mapping[str, object],
    servers: Mapping[str, object],
    report: Report,
) -> PlanQuotas:
    pairs = _by_level((*loc, "concurrent_requests"), spec.concurrent_requests, report)
    rates = _by_level((*loc, "requests_per_minute"), spec.requests_per_minute, report)
    for index, glob in enumerate(spec.models or ()):
        if not any(fnmatch.fnmatchcase(name, glob) for name in models):
            report((*loc, "models", index), f"{glob!r} matches no model listed under models:")
    _check_tools((*loc, "tools"), spec.tools or (), servers, report)
    return PlanQuotas(
        runs_per_day=spec.runs_per_day,
        steps_per_run=spec.steps_per_run,
        requests_per_minute=rates.pop("tenant", None),
        tokens_per_minute=spec.tokens_per_minute,
        concurrent_requests=tuple((level, pairs[level]) for level in LEVELS if level in pairs),
        level_requests_per_minute=tuple((lv, rates[lv]) for lv in LEVELS if lv in rates),
        max_tokens_per_request=spec.max_tokens_per_request,
        models=None if spec.models is None else tuple(spec.models),
        tools=None if spec.tools is None else tuple(spec.tools),
    )


def _check_tools(
    loc: Loc, globs: Sequence[str], servers: Mapping[str, object], report: Report
) -> None:
    for index, glob in enumerate(globs):
        problem = tool_glob_problem(glob, servers)
        if problem is not None:
            report((*loc, index), problem)


def _by_level(loc: Loc, written: int | dict[str, int] | None, report: Report) -> dict[str, int]:
    """A quota written as a number (the tenant's) or by level: level → limit, known levels only."""
    pairs = {"tenant": written} if isinstance(written, int) else dict(written or {})
    for level in [level for level in pairs if level not in LEVELS]:
        report((*loc, level), _unknown_level(level))
        del pairs[level]
    return pairs


class PlanContext(NamedTuple):
    """What a plan's degrade rules are checked against."""

    budgets: tuple[Budget, ...]
    action_budgets: tuple[Budget, ...]
    quotas: PlanQuotas
    models: Mapping[str, object]
    servers: Mapping[str, object]


def compile_degrade(
    loc: Loc, rules: list[DegradeSpec], plan: PlanContext, report: Report
) -> tuple[DegradeRule, ...]:
    compiled = []
    for index, rule in enumerate(rules):
        here: Loc = (*loc, index)
        if rule.set_.hide_tools is not None:
            hiding = _hide_rule(here, index, rule, plan, report)
            compiled += [hiding] if hiding is not None else []
            continue
        budgets, quotas, models = plan.budgets, plan.quotas, plan.models
        action = rule.set_
        if action.model is None and action.max_tokens is None and action.fit is None:
            report((*here, "set"), "set nothing: give model, max_tokens, fit, or hide_tools")
        if action.model is not None and action.model not in models:
            report((*here, "set", "model"), f"model {action.model!r} is not listed under models:")
        when = _when(here, rule.when, budgets, report)
        if when is None:
            continue
        kind, level, fraction, amount = when
        if kind == "model_not_allowed" and (
            action.model is None or not quotas.model_allowed(action.model)
        ):
            report(
                (*here, "set", "model"),
                "a model_not_allowed rule must switch to a model the plan's quotas.models allows",
            )
        only = rule.when.model
        compiled.append(
            DegradeRule(
                index=index,
                kind=kind,
                level=level,
                below_fraction=fraction,
                below_amount=amount,
                only_models=(only,) if isinstance(only, str) else tuple(only or ()),
                model=action.model,
                max_tokens=action.max_tokens,
                fit_floor=None if action.fit is None else action.fit.min_tokens,
            )
        )
    return tuple(compiled)


def _hide_rule(
    loc: Loc, index: int, rule: DegradeSpec, plan: PlanContext, report: Report
) -> DegradeRule | None:
    """`set: {hide_tools: [...]}`: when {scope, remaining_below} only, and nothing else set."""
    others = [name for name in ("model", "max_tokens", "fit") if getattr(rule.set_, name)]
    if others:
        report((*loc, "set"), f"a hide_tools rule sets nothing else; remove {', '.join(others)}")
    when = rule.when
    if when.remaining_below is None or when.does_not_fit or when.model_not_allowed or when.model:
        message = "a hide_tools rule fires on {scope, remaining_below} only (no model, no fit)"
        report((*loc, "when"), message)
        return None
    hide = rule.set_.hide_tools or []
    if not hide:
        report((*loc, "set", "hide_tools"), "name the tools to hide, e.g. ['mcp:crm/send_*']")
    _check_tools((*loc, "set", "hide_tools"), hide, plan.servers, report)
    measured = plan.budgets
    if isinstance(when.remaining_below, str):
        measured = (*plan.budgets, *plan.action_budgets)
    elif not any(b.level == when.scope for b in plan.budgets) and any(
        b.level == when.scope for b in plan.action_budgets
    ):
        message = (
            f"an amount is in the level's call budget unit, and {when.scope!r} has only action "
            "budgets: write a percentage, e.g. '20%'"
        )
        report((*loc, "when", "remaining_below"), message)
        return None
    condition = _remaining_below(loc, when, measured, report)
    if condition is None:
        return None
    _kind, level, fraction, amount = condition
    return DegradeRule(
        index=index,
        kind="remaining_below",
        level=level,
        below_fraction=fraction,
        below_amount=amount,
        hide_tools=tuple(hide),
    )


Kind = Literal["remaining_below", "not_fit", "model_not_allowed"]
Condition = tuple[Kind, str | None, tuple[int, int] | None, int | None]


def _when(
    loc: Loc, when: WhenSpec, budgets: tuple[Budget, ...], report: Report
) -> Condition | None:
    given = [
        name
        for name in ("remaining_below", "does_not_fit", "model_not_allowed")
        if getattr(when, name) is not None
    ]
    if len(given) != 1:
        report(
            (*loc, "when"), "give exactly one of remaining_below, does_not_fit, model_not_allowed"
        )
        return None
    if given[0] == "does_not_fit":
        return ("not_fit", None, None, None)
    if given[0] == "model_not_allowed":
        return ("model_not_allowed", None, None, None)
    return _remaining_below(loc, when, budgets, report)


def _remaining_below(
    loc: Loc, when: WhenSpec, budgets: tuple[Budget, ...], report: Report
) -> Condition | None:
    if when.scope is None:
        report((*loc, "when", "scope"), "remaining_below needs the scope level it measures")
        return None
    budget = next((b for b in budgets if b.level == when.scope), None)
    if budget is None:
        levels = ", ".join(b.level for b in budgets) or "none"
        problem = (
            _unknown_level(when.scope)
            if when.scope not in LEVELS
            else (
                f"the plan has no budget on {when.scope!r} to measure (budgeted levels: {levels})"
            )
        )
        report((*loc, "when", "scope"), problem)
        return None
    value = when.remaining_below
    at: Loc = (*loc, "when", "remaining_below")
    if isinstance(value, str):
        fraction = _percentage(value)
        if fraction is None:
            report(at, f"{value!r} is not a percentage like '20%' (or write an amount)")
            return None
        return ("remaining_below", budget.level, fraction, None)
    assert value is not None
    places = USD_PLACES if budget.unit == "USD" else 0
    try:
        return (
            "remaining_below",
            budget.level,
            None,
            to_units(value, places, "amount", budget.unit),
        )
    except AmountError as exc:
        report(at, str(exc))
        return None


def _percentage(text: str) -> tuple[int, int] | None:
    """'20%' → (20, 100); '12.5%' → (25, 200). None unless 0 < p ≤ 100."""
    if not text.endswith("%"):
        return None
    try:
        value = Decimal(text[:-1].strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or not 0 < value <= 100:
        return None
    numerator, denominator = (value / 100).as_integer_ratio()
    return numerator, denominator


def _unknown_level(level: str) -> str:
    return f"unknown level {level!r}; levels are {', '.join(LEVELS)}"
