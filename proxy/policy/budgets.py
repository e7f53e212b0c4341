"""A plan (its budgets, alert thresholds, and the quotas and degrade rules of plans.py) and the
price of each named action, as written → their runtime form, each problem collected at its field
path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal

from proxy.core.types import ACTION_UNITS
from proxy.policy.issues import Issue, Loc, units_or_issue
from proxy.policy.plans import compile_degrade, compile_quotas
from proxy.policy.runtime import LEVELS, ActionPrice, Budget, Plan
from proxy.policy.spec import ActionBudgetSpec, BudgetSpec, PlanSpec, PolicySpec
from proxy.policy.units import USD_PLACES, AmountError, to_units

ACTION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def compile_plan(name: str, plan: PlanSpec, spec: PolicySpec, out: list[Issue]) -> Plan:
    if name == "deny":
        message = "a plan cannot be called 'deny': unknown_tenant: deny refuses unknown tenants"
        out.append(Issue(("plans", name), message))
    budgets = _budgets(("plans", name, "budgets"), plan.budgets, out)
    action_budgets = _budgets(("plans", name, "action_budgets"), plan.action_budgets, out)
    given = plan.model_dump(
        include={"default_max_tokens", "default_max_tool_calls"}, exclude_none=True
    )

    def report(loc: Loc, message: str) -> None:
        out.append(Issue(loc, message))

    here: Loc = ("plans", name)
    quotas = compile_quotas((*here, "quotas"), plan.quotas, spec.models, report)
    degrade = compile_degrade(
        (*here, "degrade"), plan.degrade, tuple(budgets), quotas, spec.models, report
    )
    alerts = thresholds((plan.alerts or spec.alerts).thresholds)
    return Plan(
        name,
        budgets,
        quotas=quotas,
        degrade=degrade,
        alerts=alerts,
        action_budgets=action_budgets,
        **given,
    )


def _budgets(
    loc: Loc, written: Mapping[str, BudgetSpec | ActionBudgetSpec], out: list[Issue]
) -> tuple[Budget, ...]:
    """One section of a plan's budgets (`budgets` or `action_budgets`), in LEVELS order."""
    budgets = [
        budget
        for level, spec in written.items()
        if (budget := _budget((*loc, level), level, spec, out)) is not None
    ]
    return tuple(sorted(budgets, key=lambda budget: LEVELS.index(budget.level)))


def thresholds(written: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted(set(written)))


def _budget(
    loc: Loc, level: str, spec: BudgetSpec | ActionBudgetSpec, out: list[Issue]
) -> Budget | None:
    if isinstance(spec, BudgetSpec) and spec.unit in ACTION_UNITS:
        message = (
            f"{spec.unit} budgets are for actions, not LLM calls: move this budget to the "
            f"plan's action_budgets (a level may have a budget in each)"
        )
        out.append(Issue((*loc, "unit"), message))
    if level not in LEVELS:
        out.append(Issue(loc, f"unknown level {level!r}; levels are {', '.join(LEVELS)}"))
        return None
    period = spec.period or ("none" if level == "run" else "month")
    if level == "run" and period != "none":
        message = (
            f"a run budget has no period (got {period!r}): it lasts for the run, whose "
            "entries expire after reservations.run_idle_seconds. Remove 'period'"
        )
        out.append(Issue((*loc, "period"), message))
    places = USD_PLACES if spec.unit == "USD" else 0
    limit = units_or_issue(spec.limit, places, (*loc, "limit"), ("limit", spec.unit), out)
    return Budget(level, limit, spec.unit, period)


def compile_actions(spec: PolicySpec, out: list[Issue]) -> dict[str, ActionPrice]:
    """`send_email: {RISK_POINTS: 50}`: each action is priced in exactly one action unit."""
    actions: dict[str, ActionPrice] = {}
    for name, prices in spec.actions.items():
        loc: Loc = ("actions", name)
        if not ACTION_NAME.fullmatch(name):
            message = (
                f"action name {name!r} is invalid: use 1 to 128 characters from "
                "A-Z, a-z, 0-9, '_', '.' and '-'"
            )
            out.append(Issue(loc, message))
        if len(prices) != 1:
            message = f"price the action in exactly one unit, e.g. {{{ACTION_UNITS[0]}: 50}}"
            out.append(Issue(loc, message))
        for unit, amount in prices.items():
            price = _action_price(name, unit, amount, (*loc, unit), out)
            if price is not None:
                actions[name] = price
    return actions


def _action_price(
    name: str, unit: str, amount: Decimal, loc: Loc, out: list[Issue]
) -> ActionPrice | None:
    if unit not in ACTION_UNITS:
        message = (
            f"{unit!r} is not an action unit; actions are priced in {', '.join(ACTION_UNITS)} "
            "(LLM calls are priced by models:)"
        )
        out.append(Issue(loc, message))
        return None
    try:
        units = to_units(amount, 0, "price", unit)
    except AmountError as exc:
        out.append(Issue(loc, str(exc)))
        return None
    if units == 0:
        out.append(Issue(loc, "an action must cost at least 1; a free action needs no budget"))
        return None
    return ActionPrice(name, unit, units)
