"""The one reserve request a call makes: its budget lines, its quotas, and its candidates.

Every check that depends on the ledger's state (a degrade rule's `remaining_below`, "does not
fit", `fit`, every quota) is expressed here as data and decided inside the reserve script, so a
call costs one round trip and nothing can change between the check and the reservation.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.budget.call import PreparedCall
from proxy.budget.directory import TenantConfig
from proxy.budget.scopes import Scope, budget_lines
from proxy.budget.variants import Variant
from proxy.core.ids import new_id
from proxy.metering.pricing import fit_rates
from proxy.metering.token_kinds import estimate_price
from proxy.policy.runtime import DegradeRule, Plan
from proxy.store.ledger.base import (
    ALWAYS,
    BudgetLine,
    Candidate,
    Condition,
    Fit,
    Quotas,
    ReserveRequest,
)

NEVER = Condition("never")
NOT_FIT = Condition("not_fit")


def reserve_request(tenant: TenantConfig, scope: Scope, call: PreparedCall) -> ReserveRequest:
    lines = budget_lines(tenant.plan, scope, tenant.overrides)
    return ReserveRequest(
        tenant=scope.tenant,
        reservation_id=new_id(),
        lines=lines,
        candidates=[candidate(call, variant, lines) for variant in call.variants],
        shadow=tenant.mode == "shadow",
        run=scope.run,
        quotas=quotas(tenant.plan, scope),
        version=tenant.version,
        utc_offset_min=tenant.utc_offset_min(),
        scope=scope.path(),
        alerts=tenant.alerts,
    )


def quotas(plan: Plan, scope: Scope) -> Quotas:
    q = plan.quotas
    return Quotas(
        concurrent=[
            (level, scope.values[level], limit)
            for level, limit in q.concurrent_requests
            if level in scope.values
        ],
        runs_per_day=q.runs_per_day,
        steps_per_run=q.steps_per_run,
        requests_per_minute=q.requests_per_minute,
        tokens_per_minute=q.tokens_per_minute,
        rates=[
            (level, scope.values[level], limit)
            for level, limit in q.level_requests_per_minute
            if level in scope.values
        ],
    )


def candidate(call: PreparedCall, variant: Variant, lines: Sequence[BudgetLine]) -> Candidate:
    rule = variant.rule
    if rule is None:
        return Candidate(variant.amounts, ALWAYS if call.asked_allowed else NEVER)
    return Candidate(variant.amounts, _condition(rule, lines), _fit(call, variant), rule.name)


def _condition(rule: DegradeRule, lines: Sequence[BudgetLine]) -> Condition:
    if rule.kind == "model_not_allowed":
        return ALWAYS
    if rule.kind == "not_fit":
        return NOT_FIT
    index = next((i for i, line in enumerate(lines) if line.level == rule.level), None)
    if index is None:
        # The call does not name that level, so its remaining amount cannot be below anything.
        return NEVER
    if rule.below_amount is not None:
        return Condition("remaining_below", index, rule.below_amount)
    assert rule.below_fraction is not None
    numerator, denominator = rule.below_fraction
    # remaining < limit × fraction, for an integer remaining, is remaining < ceil(that).
    return Condition("remaining_below", index, -(-lines[index].limit * numerator // denominator))


def _fit(call: PreparedCall, variant: Variant) -> Fit | None:
    rule = variant.rule
    if rule is None or rule.fit_floor is None or call.choices == 0:
        return None
    # The prompt, the tier and tool fees, and the output price as the reservation priced them.
    price = estimate_price(variant.price, call.body, call.endpoint.name)
    rest, output = fit_rates(price, variant.usage(0))
    return Fit(
        prompt_units=rest,
        prompt_tokens=variant.prompt_tokens,
        output_per_million=output,
        choices=call.choices,
        floor=rule.fit_floor,
        ceiling=max(variant.priced_limit, rule.fit_floor),
    )
