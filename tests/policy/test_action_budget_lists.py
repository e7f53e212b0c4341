"""A level holds several action budgets in distinct units (`tenant: [{EMAILS}, {RISK_POINTS}]`,
besides the one-budget form), each reserved on by asks of its unit; two of one unit on one level
are a policy error. A plan that budgets a unit tools are priced in on no level gets a warning
and `check` says the tool is refused for it."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.actions.reserving import lines_for
from proxy.budget.scopes import Scope
from proxy.core.errors import BadRequest
from proxy.policy.advice import warnings
from proxy.policy.describe import describe
from proxy.policy.issues import PolicyIssues
from proxy.policy.runtime import Budget, Policy
from proxy.policy.schema import compile_policy
from proxy.store.ledger.base import BudgetLine

BOTH: dict[str, Any] = {
    "action_budgets": {
        "tenant": [
            {"limit": 10, "unit": "EMAILS", "period": "day"},
            {"limit": 200, "unit": "RISK_POINTS", "period": "month"},
        ],
        "run": {"limit": 5},
    }
}
ONE: dict[str, Any] = {"action_budgets": {"tenant": {"limit": 10, "unit": "EMAILS"}}}
SERVERS = {"crm": {"url": "http://crm.invalid/mcp"}}
ACTIONS = {"mcp:crm/send_*": {"EMAILS": 1}, "mcp:crm/delete_*": {"RISK_POINTS": 50}}


def policy(**plans: dict[str, Any]) -> Policy:
    return compile_policy({"plans": plans, "mcp_servers": SERVERS, "actions": ACTIONS})


def test_a_level_holds_one_budget_per_action_unit() -> None:
    plan = policy(p=BOTH).plans["p"]
    assert plan.action_budgets == (
        Budget("tenant", 10, "EMAILS", "day"),
        Budget("tenant", 200, "RISK_POINTS", "month"),
        Budget("run", 5, "RISK_POINTS", "none"),
    )
    assert plan.budget_of("tenant", "RISK_POINTS") == Budget("tenant", 200, "RISK_POINTS")
    scope = Scope("acme", {"tenant": "acme", "run": "r1"}, {})
    assert lines_for(plan, scope, "EMAILS") == [BudgetLine("tenant", "acme", "EMAILS", "day", 10)]
    assert lines_for(plan, scope, "RISK_POINTS") == [
        BudgetLine("tenant", "acme", "RISK_POINTS", "month", 200),
        BudgetLine("run", "r1", "RISK_POINTS", "none", 5),
    ]


def test_two_budgets_of_one_unit_on_one_level_are_refused() -> None:
    twice = [{"limit": 10, "unit": "EMAILS"}, {"limit": 20, "unit": "EMAILS", "period": "day"}]
    with pytest.raises(PolicyIssues) as caught:
        compile_policy({"plans": {"p": {"action_budgets": {"tenant": twice}}}})
    text = str(caught.value)
    assert "plans.p.action_budgets.tenant[1].unit: a second EMAILS budget on tenant" in text
    with pytest.raises(PolicyIssues, match=r"tenant\[0\]\.unit: 'USD' is not an action unit"):
        usd = [{"limit": 1, "unit": "USD"}]
        compile_policy({"plans": {"p": {"action_budgets": {"tenant": usd}}}})


def test_a_plan_without_a_tools_unit_is_warned_about_and_check_says_refused() -> None:
    p = policy(both=BOTH, one=ONE)
    said = warnings(p)
    assert said == [
        "plan one does not budget RISK_POINTS: tools priced in it (mcp:crm/delete_*) are "
        "refused for its tenants. Add a RISK_POINTS budget to plans.one.action_budgets if they "
        "should run."
    ]
    text = describe(p)
    assert "refused for plan one (no RISK_POINTS budget)" in text
    assert "WARNING: plan one does not budget RISK_POINTS" in text
    with pytest.raises(BadRequest, match="budgets RISK_POINTS on no level"):
        lines_for(p.plans["one"], Scope("acme", {"tenant": "acme"}, {}), "RISK_POINTS")
