"""A plan (its budgets, alert thresholds, and the quotas and degrade rules of plans.py) and the
price of each named action, as written → their runtime form, each problem collected at its field
path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal

from pydantic import TypeAdapter, ValidationError

from proxy.core.types import CALL_UNITS, RISK_POINTS, is_action_unit
from proxy.policy.issues import Issue, Loc, units_or_issue
from proxy.policy.mcp import tool_glob_problem
from proxy.policy.plans import PlanContext, compile_degrade, compile_quotas
from proxy.policy.runtime import LEVELS, ActionPrice, Budget, Plan
from proxy.policy.spec import ActionBudgetSpec, BudgetSpec, PlanSpec, PolicySpec
from proxy.policy.spec_mcp import ActionSpec
from proxy.policy.spec_types import Money
from proxy.policy.tools import TOOL_PREFIX, ToolPrice
from proxy.policy.units import USD_PLACES, AmountError, to_units

ACTION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_MONEY: TypeAdapter[Decimal] = TypeAdapter(Money)


def compile_plan(name: str, plan: PlanSpec, spec: PolicySpec, out: list[Issue]) -> Plan:
    if name == "deny":
        message = "a plan cannot be called 'deny': unknown_tenant: deny refuses unknown tenants"
        out.append(Issue(("plans", name), message))
    budgets = _budgets(("plans", name, "budgets"), plan.budgets, out)
    action_budgets = _action_budgets(("plans", name, "action_budgets"), plan.action_budgets, out)
    given = plan.model_dump(
        include={"default_max_tokens", "default_max_tool_calls"}, exclude_none=True
    )

    def report(loc: Loc, message: str) -> None:
        out.append(Issue(loc, message))

    here: Loc = ("plans", name)
    servers = spec.mcp_servers
    quotas = compile_quotas((*here, "quotas"), plan.quotas, spec.models, servers, report)
    context = PlanContext(budgets, action_budgets, quotas, spec.models, servers)
    degrade = compile_degrade((*here, "degrade"), plan.degrade, context, report)
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


def _action_budgets(
    loc: Loc, written: Mapping[str, ActionBudgetSpec | list[ActionBudgetSpec]], out: list[Issue]
) -> tuple[Budget, ...]:
    """A plan's `action_budgets`: per level one budget, or a list of them in distinct units
    (`tenant: [{limit: 10, unit: EMAILS}, {limit: 200, unit: RISK_POINTS}]`), in LEVELS
    order."""
    budgets: list[Budget] = []
    for level, specs in written.items():
        listed = isinstance(specs, list)
        units: set[str] = set()
        for i, spec in enumerate(specs if isinstance(specs, list) else [specs]):
            at: Loc = (*loc, level, i) if listed else (*loc, level)
            if spec.unit in units:
                message = (
                    f"a second {spec.unit} budget on {level}: a level holds one budget per "
                    "unit; keep one, or budget another level"
                )
                out.append(Issue((*at, "unit"), message))
                continue
            units.add(spec.unit)
            if (budget := _budget(at, level, spec, out)) is not None:
                budgets.append(budget)
    return tuple(sorted(budgets, key=lambda budget: LEVELS.index(budget.level)))


def thresholds(written: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted(set(written)))


def _budget(
    loc: Loc, level: str, spec: BudgetSpec | ActionBudgetSpec, out: list[Issue]
) -> Budget | None:
    problem = _unit_problem(spec)
    if problem is not None:
        out.append(Issue((*loc, "unit"), problem))
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


def _unit_problem(spec: BudgetSpec | ActionBudgetSpec) -> str | None:
    if isinstance(spec, BudgetSpec):
        if spec.unit in CALL_UNITS:
            return None
        if is_action_unit(spec.unit):
            return (
                f"{spec.unit} budgets are for actions, not LLM calls: move this budget to the "
                f"plan's action_budgets (a level may have a budget in each)"
            )
        return f"{spec.unit!r} is not a unit for LLM calls; use USD or TOKENS"
    if is_action_unit(spec.unit):
        return None
    return (
        f"{spec.unit!r} is not an action unit: action_budgets count RISK_POINTS or a unit of "
        "your own (an upper-case letter, then up to 31 of A-Z, 0-9, '_', e.g. EMAILS); "
        "USD and TOKENS budgets go under budgets:"
    )


def compile_actions(
    spec: PolicySpec, servers: Mapping[str, object], out: list[Issue]
) -> tuple[dict[str, ActionPrice], tuple[ToolPrice, ...]]:
    """`send_email: {RISK_POINTS: 50}` and `"mcp:crm/*": {EMAILS: 1, charge_on_error: ...}`:
    each priced in exactly one action unit, or in USD. The named actions (the reservation
    API's) and the tool prices (mcp: keys, in the order written) come apart."""
    actions: dict[str, ActionPrice] = {}
    tools: list[ToolPrice] = []
    for name, entry in spec.actions.items():
        loc: Loc = ("actions", name)
        tool = name.startswith(TOOL_PREFIX)
        problem = tool_glob_problem(name, servers) if tool else _action_name_problem(name)
        if problem is not None:
            out.append(Issue(loc, problem))
        if not tool and entry.charge_on_error is not None:
            message = "charge_on_error is for MCP tools (mcp:<server>/<tool> keys) only"
            out.append(Issue((*loc, "charge_on_error"), message))
        price = _price(entry, loc, out)
        if price is None or problem is not None:
            continue
        unit, amount = price
        if tool:
            tools.append(ToolPrice(name, unit, amount, entry.charge_on_error or "reserved"))
        else:
            actions[name] = ActionPrice(name, unit, amount)
    return actions, tuple(tools)


def _action_name_problem(name: str) -> str | None:
    if ACTION_NAME.fullmatch(name):
        return None
    return (
        f"action name {name!r} is invalid: use 1 to 128 characters from "
        "A-Z, a-z, 0-9, '_', '.' and '-' (or mcp:<server>/<tool> for an MCP tool)"
    )


def _price(entry: ActionSpec, loc: Loc, out: list[Issue]) -> tuple[str, int] | None:
    prices = entry.prices
    if len(prices) != 1:
        message = (
            f'price the action in exactly one unit, e.g. {{{RISK_POINTS}: 50}} or {{USD: "0.01"}}'
        )
        out.append(Issue(loc, message))
        return None
    ((unit, written),) = prices.items()
    at: Loc = (*loc, unit)
    if not (unit == "USD" or is_action_unit(unit)):
        out.append(Issue(at, _not_a_price_unit(unit)))
        return None
    try:
        amount = _MONEY.validate_python(written)
        units = to_units(amount, USD_PLACES if unit == "USD" else 0, "price", unit)
    except ValidationError as exc:
        out.append(Issue(at, exc.errors(include_url=False)[0]["msg"]))
        return None
    except AmountError as exc:
        out.append(Issue(at, str(exc)))
        return None
    if units == 0:
        out.append(Issue(at, "an action must cost at least 1 unit; a free action needs no price"))
        return None
    return unit, units


def _not_a_price_unit(unit: str) -> str:
    if unit == "TOKENS":
        return (
            "TOKENS is not a price for an action or tool (tokens are what LLM calls use); "
            "price it in USD or an action unit such as RISK_POINTS"
        )
    return (
        f"{unit!r} is not a unit to price an action in: use USD, RISK_POINTS or a unit of "
        "your own (an upper-case letter, then up to 31 of A-Z, 0-9, '_', e.g. EMAILS)"
    )
