"""Operator units (issue 20): an action unit is RISK_POINTS or a name of the operator's
(`EMAILS`); action_budgets count any of them, actions are priced in one of them or in USD, and
what assumed the three built-in units now takes the policy's (the reservation API's units, a
USD-priced action's lines, the hide rules LLM calls never see)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.actions.asks import parse_ask
from proxy.actions.reserving import lines_for, reservation_of, reserve_request
from proxy.budget.call import prepare
from proxy.budget.directory import TenantConfig
from proxy.budget.endpoints import ENDPOINTS
from proxy.budget.reserve import reserve_request as call_request
from proxy.budget.scopes import Scope
from proxy.core.errors import BadRequest
from proxy.core.types import UNITS_PER_USD, is_action_unit
from proxy.policy.issues import PolicyIssues
from proxy.policy.runtime import ActionPrice, Budget, Policy
from proxy.policy.schema import compile_policy
from proxy.store.ledger.base import BudgetLine, ReservationRecord

PLAN: dict[str, Any] = {
    "budgets": {"tenant": {"limit": 100}, "run": {"limit": 1}},
    "action_budgets": {
        "tenant": {"limit": 10, "unit": "EMAILS", "period": "day"},
        "run": {"limit": 5, "unit": "TOOL_CALLS"},
    },
}


def policy(**sections: Any) -> Policy:
    return compile_policy({"plans": {"p": PLAN}, **sections})


def refused(**sections: Any) -> str:
    with pytest.raises(PolicyIssues) as caught:
        compile_policy(sections)
    return str(caught.value)


@pytest.mark.parametrize(
    ("name", "action"),
    [
        ("RISK_POINTS", True),
        ("EMAILS", True),
        ("A", True),
        ("TOOL_CALLS_2", True),
        ("A" + "B" * 31, True),
        ("A" + "B" * 32, False),
        ("USD", False),
        ("TOKENS", False),
        ("emails", False),
        ("_EMAILS", False),
        ("1EMAILS", False),
        ("E-MAILS", False),
        ("", False),
    ],
)
def test_an_action_unit_is_risk_points_or_an_upper_case_name(name: str, action: bool) -> None:
    assert is_action_unit(name) is action


def test_action_budgets_count_operator_units() -> None:
    plan = policy().plans["p"]
    assert plan.action_budgets == (
        Budget("tenant", 10, "EMAILS", "day"),
        Budget("run", 5, "TOOL_CALLS", "none"),
    )
    assert plan.budget_of("tenant", "EMAILS") == Budget("tenant", 10, "EMAILS", "day")


@pytest.mark.parametrize(
    ("section", "unit", "message"),
    [
        ("action_budgets", "USD", "'USD' is not an action unit: action_budgets count"),
        ("action_budgets", "TOKENS", "'TOKENS' is not an action unit"),
        ("action_budgets", "emails", "'emails' is not an action unit"),
        ("budgets", "EMAILS", "EMAILS budgets are for actions, not LLM calls"),
        ("budgets", "RISK_POINTS", "RISK_POINTS budgets are for actions, not LLM calls"),
        ("budgets", "dollars", "'dollars' is not a unit for LLM calls; use USD or TOKENS"),
    ],
)
def test_a_unit_in_the_wrong_section_names_the_budget(
    section: str, unit: str, message: str
) -> None:
    text = refused(plans={"p": {section: {"tenant": {"limit": 5, "unit": unit}}}})
    assert f"plans.p.{section}.tenant.unit: {message}" in text


def test_actions_are_priced_in_any_action_unit_or_in_usd() -> None:
    p = policy(actions={"mail": {"EMAILS": 1}, "search": {"USD": "0.00000001"}})
    assert p.actions == {
        "mail": ActionPrice("mail", "EMAILS", 1),
        "search": ActionPrice("search", "USD", 1),
    }
    assert p.units == {"USD", "EMAILS", "TOOL_CALLS"}


def test_the_reservation_api_takes_a_unit_the_policy_knows_and_lists_them_otherwise() -> None:
    p = policy(actions={"risky": {"RISK_POINTS": 3}})
    assert parse_ask(b'{"unit": "TOOL_CALLS", "amount": 2}', p).unit == "TOOL_CALLS"
    assert parse_ask(b'{"unit": "RISK_POINTS", "amount": 2}', p).unit == "RISK_POINTS"
    for unit in ("PAGES", "USD", "TOKENS", 7):
        raw = orjson.dumps({"unit": unit, "amount": 2})
        with pytest.raises(BadRequest) as caught:
            parse_ask(raw, p)
        assert "action unit the policy knows (EMAILS, RISK_POINTS, TOOL_CALLS)" in str(caught.value)


def scope(**values: str) -> Scope:
    return Scope("acme", {"tenant": "acme", **values}, {})


def test_an_action_priced_in_usd_reserves_on_the_plans_usd_lines_with_overrides() -> None:
    p = policy(actions={"search": {"USD": "0.01"}})
    plan = p.plans["p"]
    tenant = TenantConfig("acme", plan, "enforce", 1, overrides={"tenant": 7 * UNITS_PER_USD})
    ask = parse_ask(b'{"action": "search"}', p)
    request = reserve_request(tenant, scope(run="r1"), ask)
    assert request.lines == [
        BudgetLine("tenant", "acme", "USD", "month", 7 * UNITS_PER_USD),
        BudgetLine("run", "r1", "USD", "none", 1 * UNITS_PER_USD),
    ]
    assert [c.amounts for c in request.candidates] == [{"USD": UNITS_PER_USD // 100}]
    assert lines_for(plan, scope(run="r1"), "EMAILS") == [
        BudgetLine("tenant", "acme", "EMAILS", "day", 10)
    ]
    fields = tuple(f"{x.level}|{x.value}|{x.unit}|{x.period}" for x in request.lines)
    record = ReservationRecord(request.reservation_id, "OPEN", 0, {"USD": 10**6}, fields)
    alerting = TenantConfig("acme", plan, "enforce", 1, overrides=tenant.overrides, alerts=(8000,))
    assert reservation_of(record, alerting).limits == (7 * UNITS_PER_USD, UNITS_PER_USD)


def test_a_usd_action_on_a_plan_without_usd_budgets_on_its_levels_is_400() -> None:
    p = policy(actions={"search": {"USD": "0.01"}})
    with pytest.raises(BadRequest, match="budgets USD only on tenant, run"):
        lines_for(p.plans["p"], Scope("acme", {"workflow": "w"}, {}), "USD")


def test_llm_calls_take_no_candidate_from_a_hide_rule() -> None:
    degrade = [
        {"when": {"scope": "tenant", "remaining_below": "20%"}, "set": {"hide_tools": ["mcp:c/x"]}},
        {"when": {"scope": "tenant", "remaining_below": "10%"}, "set": {"max_tokens": 16}},
    ]
    p = compile_policy(
        {
            "upstreams": {"openai": {"base_url": "https://api.openai.com/v1"}},
            "routes": [{"model": "*", "upstream": "openai"}],
            "models": {"gpt-4o-mini": {"input": "0.15", "output": "0.60"}},
            "mcp_servers": {"c": {"url": "http://c/mcp"}},
            "plans": {"p": {**PLAN, "degrade": degrade}},
        }
    )
    plan = p.plans["p"]
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    call = prepare(p, plan, ENDPOINTS["/v1/chat/completions"], orjson.dumps(body), shadow=False)
    request = call_request(TenantConfig("acme", plan, "enforce", 1), scope(), call)
    assert [c.name for c in request.candidates] == ["", "degrade[1]"]
