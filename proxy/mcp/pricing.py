"""What a tool call reserves, and what hides a tool: the reserve request (the same script as
every call: lines, one candidate, the plan's quotas but the token rate, shadow), the text a
denial answers with, and the hide rules that fire. No I/O of its own: `firing` is handed its
ledger read."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence

from proxy.budget import reserve
from proxy.budget.directory import TenantConfig
from proxy.budget.scopes import Scope, budget_lines
from proxy.core.ids import new_id
from proxy.metering.pricing import format_amount
from proxy.policy.runtime import DegradeRule, Plan
from proxy.policy.tools import ToolPrice, tool_key
from proxy.store.ledger.base import (
    BudgetLine,
    Candidate,
    LineBalance,
    LineState,
    ReserveRequest,
    ReserveResult,
)

ReadLines = Callable[[Sequence[BudgetLine]], Awaitable[list[LineBalance]]]


def lines_of(tenant: TenantConfig, scope: Scope, unit: str) -> list[BudgetLine]:
    """The lines a price in `unit` reserves on: the plan's USD budgets (with the tenant's
    overrides) for USD, its action budgets in that unit otherwise; on the levels the caller
    names."""
    if unit == "USD":
        every = budget_lines(tenant.plan, scope, tenant.overrides)
        return [line for line in every if line.unit == "USD"]
    return [line for line in action_lines(tenant.plan, scope) if line.unit == unit]


def action_lines(plan: Plan, scope: Scope) -> list[BudgetLine]:
    """The plan's action budgets on the levels the caller names."""
    return [
        BudgetLine(b.level, scope.values[b.level], b.unit, b.period, b.limit)
        for b in plan.action_budgets
        if b.level in scope.values
    ]


def unbudgeted(plan: Plan, unit: str, lines: Sequence[BudgetLine]) -> str | None:
    """Why a call priced in `unit` that reserves on `lines` is refused before the ledger
    (nothing would hold it back), or None: the plan budgets the unit on no level, or only on
    levels the call does not name. The reservation API refuses the same (unit_not_budgeted)."""
    if lines:
        return None
    budgets = plan.budgets if unit == "USD" else plan.action_budgets
    levels = [b.level for b in budgets if b.unit == unit]
    if not levels:
        section = "budgets" if unit == "USD" else "action_budgets"
        return (
            f"Plan {plan.name!r} budgets {unit} on no level, so tools priced in {unit} are "
            f"refused for its tenants: ask the operator for {unit} {section}."
        )
    return (
        f"Plan {plan.name!r} budgets {unit} only on {', '.join(levels)}, and this call names "
        "none of them: name one in the scope headers."
    )


def reserve_request(
    tenant: TenantConfig, scope: Scope, server: str, tool: str, price: ToolPrice | None
) -> ReserveRequest:
    """The reservation of one tool call; an unpriced one (allowed) holds nothing and counts its
    quotas."""
    lines = lines_of(tenant, scope, price.unit) if price is not None else []
    amounts = {price.unit: price.amount} if price is not None else {}
    quotas = dataclasses.replace(reserve.quotas(tenant.plan, scope), tokens_per_minute=None)
    return ReserveRequest(
        tenant=scope.tenant,
        reservation_id=new_id(),
        lines=lines,
        candidates=[Candidate(amounts)],
        shadow=tenant.mode == "shadow",
        run=scope.run,
        quotas=quotas,
        version=tenant.version,
        utc_offset_min=tenant.utc_offset_min(),
        scope=scope.path(),
        alerts=tenant.alerts,
        action=tool_key(server, tool),
        group=price.key if price is not None else tool_key(server, "?"),
    )


def denial_text(state: LineState, key: str, price: ToolPrice) -> str:
    """What the model reads of a budget denial: which budget, what remains, what the tool
    needs."""
    line = state.line
    where = "tenant" if line.level == "tenant" else f"{line.level} {line.value!r}"
    period = "" if line.period == "none" else f" this {line.period}"
    return (
        f"Budget exceeded on {where}: {format_amount(max(state.remaining, 0), line.unit)} "
        f"remaining of {format_amount(line.limit, line.unit)}{period}; {key} needs "
        f"{format_amount(price.amount, price.unit)}. The tool was not called."
    )


def denied_line(result: ReserveResult) -> LineState:
    return result.lines[result.denied_by or 0]


def hide_rules(plan: Plan) -> tuple[DegradeRule, ...]:
    return tuple(rule for rule in plan.degrade if rule.hide_tools)


def level_lines(
    tenant: TenantConfig, scope: Scope, rules: Sequence[DegradeRule]
) -> list[BudgetLine]:
    """Every budget line (call and action) of the levels `rules` measure that the caller
    names."""
    levels = {rule.level for rule in rules}
    calls = budget_lines(tenant.plan, scope, tenant.overrides)
    actions = action_lines(tenant.plan, scope)
    return [line for line in (*calls, *actions) if line.level in levels]


def fires(rule: DegradeRule, balances: Sequence[LineBalance]) -> bool:
    """A hide rule holds: a fraction when any line of its level is below that fraction of its
    limit; an amount compared in the level's call budget unit."""
    mine = [b for b in balances if b.line.level == rule.level]
    if rule.below_fraction is not None:
        num, den = rule.below_fraction
        return any(b.remaining * den < b.line.limit * num for b in mine)
    if rule.below_amount is not None:
        calls = [b for b in mine if b.line.unit in ("USD", "TOKENS")]
        return any(b.remaining < rule.below_amount for b in calls)
    return False


async def firing(
    tenant: TenantConfig, scope: Scope, read: ReadLines, rules: Sequence[DegradeRule]
) -> frozenset[int]:
    """The indexes of `rules` (hide rules of the plan) that fire now, with one ledger read."""
    if not rules:
        return frozenset()
    lines = level_lines(tenant, scope, rules)
    balances = await read(lines) if lines else []
    return frozenset(rule.index for rule in rules if fires(rule, balances))
