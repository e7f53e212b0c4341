"""MCP in the policy: `mcp_servers:`, tool prices (`actions:` keys `mcp:<server>/<tool>`), the
lookup order of a tool's price, `quotas.tools`, and degrade rules that hide tools."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from proxy.core.types import UNITS_PER_USD
from proxy.policy import describe
from proxy.policy.issues import PolicyIssues
from proxy.policy.runtime import McpServer, Policy, ToolPrice
from proxy.policy.schema import compile_policy

SERVERS: dict[str, Any] = {
    "crm": {"url": "http://crm-mcp:8000/mcp/", "token_env": "CRM_MCP_TOKEN"},
    "search": {"url": "https://search.example.com/mcp", "auth": "x-api-key", "timeout_seconds": 30},
}
PLAN: dict[str, Any] = {
    "budgets": {"tenant": {"limit": 100}, "run": {"limit": 1}},
    "action_budgets": {
        "tenant": {"limit": 10, "unit": "EMAILS", "period": "day"},
        "run": {"limit": 5, "unit": "TOOL_CALLS"},
    },
}


def policy(**sections: Any) -> Policy:
    return compile_policy({"mcp_servers": SERVERS, **sections})


def refused(**sections: Any) -> str:
    with pytest.raises(PolicyIssues) as caught:
        compile_policy({"mcp_servers": SERVERS, **sections})
    return str(caught.value)


def test_servers_compile_with_their_defaults() -> None:
    servers = policy().mcp_servers
    assert servers["crm"] == McpServer("crm", "http://crm-mcp:8000/mcp", "CRM_MCP_TOKEN")
    assert servers["search"] == McpServer(
        "search", "https://search.example.com/mcp", None, "x-api-key", "deny", 30_000
    )


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ({"url": "ftp://x/mcp"}, "mcp_servers.crm.url: 'ftp://x/mcp' is not an http(s) URL"),
        ({"url": "http://u:p@x/mcp"}, "mcp_servers.crm.url: an MCP server's url must not carry"),
        ({"url": "http://x/mcp?k=1"}, "mcp_servers.crm.url: an MCP server's url must not have a"),
        ({"url": "http://x", "token_env": "A-B"}, "mcp_servers.crm.token_env: 'A-B' is not an"),
        ({"url": "http://x", "timeout_seconds": 0}, "mcp_servers.crm.timeout_seconds"),
        ({"url": "http://x", "timeout_seconds": 3601}, "mcp_servers.crm.timeout_seconds"),
        ({"url": "http://x", "auth": "basic"}, "mcp_servers.crm.auth"),
        ({"url": "http://x", "unpriced_tools": "maybe"}, "mcp_servers.crm.unpriced_tools"),
    ],
)
def test_a_bad_server_entry_names_its_field(server: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyIssues, match=re.escape(message)):
        compile_policy({"mcp_servers": {"crm": server}})


@pytest.mark.parametrize("name", ["CRM", "-crm", "crm.v2", "a" * 65, ""])
def test_a_server_name_that_is_not_a_path_segment_is_refused(name: str) -> None:
    with pytest.raises(PolicyIssues, match=f"mcp_servers.{name}: MCP server name"):
        compile_policy({"mcp_servers": {name: {"url": "http://x/mcp"}}})


def test_tool_prices_come_apart_from_the_named_actions() -> None:
    p = policy(
        actions={
            "send_email": {"RISK_POINTS": 50},
            "mcp:crm/send_email": {"EMAILS": 1},
            "mcp:crm/delete_*": {"RISK_POINTS": 50, "charge_on_error": "released"},
            "mcp:search/web": {"USD": "0.01"},
        }
    )
    assert set(p.actions) == {"send_email"}
    assert p.tool_prices == (
        ToolPrice("mcp:crm/send_email", "EMAILS", 1),
        ToolPrice("mcp:crm/delete_*", "RISK_POINTS", 50, "released"),
        ToolPrice("mcp:search/web", "USD", UNITS_PER_USD // 100),
    )


def test_a_tools_price_is_the_exact_key_else_the_most_specific_glob() -> None:
    p = policy(
        actions={
            "mcp:crm/*": {"TOOL_CALLS": 1},
            "mcp:crm/del*": {"RISK_POINTS": 10},
            "mcp:crm/delete_*": {"RISK_POINTS": 50},
            "mcp:crm/delete_all": {"RISK_POINTS": 500},
            "mcp:crm/?elete_x": {"RISK_POINTS": 7},
        }
    )

    def key(tool: str, server: str = "crm") -> str | None:
        price = p.tool_price(server, tool)
        return None if price is None else price.key

    assert key("delete_all") == "mcp:crm/delete_all"
    assert key("delete_user") == "mcp:crm/delete_*"
    assert key("delegate") == "mcp:crm/del*"
    assert key("list") == "mcp:crm/*"
    assert key("delete_x") == "mcp:crm/delete_*"  # 7 literal characters beat 6
    assert key("list", "search") is None
    assert key("a/b") == "mcp:crm/*"


def test_globs_as_specific_as_each_other_go_by_the_first_written() -> None:
    first = policy(actions={"mcp:crm/a*": {"EMAILS": 1}, "mcp:crm/*b": {"EMAILS": 2}})
    second = policy(actions={"mcp:crm/*b": {"EMAILS": 2}, "mcp:crm/a*": {"EMAILS": 1}})
    assert first.tool_price("crm", "ab") == ToolPrice("mcp:crm/a*", "EMAILS", 1)
    assert second.tool_price("crm", "ab") == ToolPrice("mcp:crm/*b", "EMAILS", 2)


@pytest.mark.parametrize(
    ("key", "entry", "message"),
    [
        ("mcp:nope/x", {"EMAILS": 1}, "'mcp:nope/x' names MCP server 'nope', which mcp_servers"),
        ("mcp:crm/b c", {"EMAILS": 1}, "'mcp:crm/b c': the tool part must be 1 to 128"),
        ("mcp:crm", {"EMAILS": 1}, "'mcp:crm' does not name MCP tools"),
        ("mcp:crm/x", {"TOKENS": 1}, "TOKENS is not a price for an action or tool"),
        ("mcp:crm/x", {"emails": 1}, "'emails' is not a unit to price an action in"),
        ("mcp:crm/x", {"EMAILS": 1, "charge_on_error": "never"}, "charge_on_error"),
        ("mcp:crm/x", {"charge_on_errors": "released"}, "'charge_on_errors' is not a unit"),
        ("mcp:crm/x", {"EMAILS": 0}, "an action must cost at least 1 unit"),
        ("mcp:crm/x", {"USD": "0.000000001"}, "more than 8 decimal places"),
        ("mcp:crm/x", {"EMAILS": 1, "USD": 1}, "price the action in exactly one unit"),
        ("send", {"EMAILS": 1, "charge_on_error": "released"}, "is for MCP tools"),
    ],
)
def test_a_bad_tool_price_names_its_key(key: str, entry: dict[str, Any], message: str) -> None:
    text = refused(actions={key: entry})
    assert f"actions.{key}" in text
    assert message in text


def test_quotas_tools_allow_only_what_their_globs_name() -> None:
    plans = {
        "some": {**PLAN, "quotas": {"tools": ["mcp:crm/*", "mcp:search/web"]}},
        "none": {**PLAN, "quotas": {"tools": []}},
        "every": PLAN,
    }
    p = policy(plans=plans)
    some, none, every = (p.plans[name].quotas for name in ("some", "none", "every"))
    assert some.tools == ("mcp:crm/*", "mcp:search/web")
    assert some.tool_allowed("crm", "send_email")
    assert some.tool_allowed("search", "web")
    assert not some.tool_allowed("search", "images")
    assert not some.tool_allowed("crmx", "send_email")
    assert not none.tool_allowed("crm", "send_email")
    assert every.tools is None and every.tool_allowed("search", "images")


@pytest.mark.parametrize(
    ("glob", "message"),
    [
        ("crm/*", "'crm/*' does not name MCP tools"),
        ("mcp:*/x", "'mcp:*/x' names MCP server '*'"),
        ("mcp:billing/*", "'mcp:billing/*' names MCP server 'billing'"),
    ],
)
def test_a_tools_quota_must_name_a_listed_server(glob: str, message: str) -> None:
    text = refused(plans={"p": {**PLAN, "quotas": {"tools": ["mcp:crm/*", glob]}}})
    assert f"plans.p.quotas.tools[1]: {message}" in text


def hide(when: dict[str, Any], hide_tools: list[str], **more: Any) -> dict[str, Any]:
    return {"when": when, "set": {"hide_tools": hide_tools, **more}}


def test_a_hide_rule_hides_the_tools_it_names_and_rewrites_no_call() -> None:
    rules = [
        {"when": {"scope": "tenant", "remaining_below": "10%"}, "set": {"max_tokens": 100}},
        hide({"scope": "tenant", "remaining_below": "20%"}, ["mcp:crm/send_*"]),
        hide({"scope": "run", "remaining_below": Decimal("0.5")}, ["mcp:crm/*", "mcp:search/web"]),
    ]
    plan = policy(models={"m": {"input": 1, "output": 1}}, plans={"p": {**PLAN, "degrade": rules}})
    p = plan.plans["p"]
    capping, tenant, run = p.degrade
    assert p.call_rules == (capping,)
    assert tenant.hide_tools == ("mcp:crm/send_*",) and tenant.level == "tenant"
    assert tenant.below_fraction == (1, 5) and tenant.kind == "remaining_below"
    assert run.below_amount == UNITS_PER_USD // 2  # in the run's call unit, USD
    assert p.hiding("crm", "send_email") == (tenant, run)
    assert p.hiding("crm", "list") == (run,)
    assert p.hiding("search", "web") == (run,)
    assert p.hiding("search", "images") == ()


def test_a_hide_rule_may_measure_a_level_with_only_an_action_budget_by_a_fraction() -> None:
    plan = {
        **PLAN,
        "budgets": {},
        "degrade": [hide({"scope": "tenant", "remaining_below": "20%"}, ["mcp:crm/*"])],
    }
    (rule,) = policy(plans={"p": plan}).plans["p"].degrade
    assert rule.level == "tenant"
    amount = {**plan, "degrade": [hide({"scope": "tenant", "remaining_below": 2}, ["mcp:crm/*"])]}
    text = refused(plans={"p": amount})
    assert "plans.p.degrade[0].when.remaining_below: an amount is in the level's call" in text


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (hide({"does_not_fit": True}, ["mcp:crm/*"]), "degrade[0].when: a hide_tools rule fires"),
        (
            hide({"scope": "tenant", "remaining_below": "20%", "model": "m"}, ["mcp:crm/*"]),
            "degrade[0].when: a hide_tools rule fires on {scope, remaining_below} only",
        ),
        (
            hide({"scope": "tenant", "remaining_below": "20%"}, ["mcp:crm/*"], max_tokens=5),
            "degrade[0].set: a hide_tools rule sets nothing else; remove max_tokens",
        ),
        (
            hide({"scope": "tenant", "remaining_below": "20%"}, []),
            "degrade[0].set.hide_tools: name the tools to hide",
        ),
        (
            hide({"scope": "tenant", "remaining_below": "20%"}, ["mcp:zz/*"]),
            "degrade[0].set.hide_tools[0]: 'mcp:zz/*' names MCP server 'zz'",
        ),
        (
            hide({"scope": "workflow", "remaining_below": "20%"}, ["mcp:crm/*"]),
            "degrade[0].when.scope: the plan has no budget on 'workflow'",
        ),
    ],
)
def test_a_bad_hide_rule_names_its_field(rule: dict[str, Any], message: str) -> None:
    text = refused(
        models={"m": {"input": 1, "output": 1}}, plans={"p": {**PLAN, "degrade": [rule]}}
    )
    assert f"plans.p.{message}" in text


def test_check_describes_servers_tool_prices_and_hide_rules() -> None:
    p = policy(
        actions={
            "mcp:crm/*": {"TOOL_CALLS": 1},
            "mcp:crm/delete_*": {"RISK_POINTS": 50, "charge_on_error": "released"},
            "mcp:search/web": {"USD": "0.01"},
        },
        plans={
            "p": {
                **PLAN,
                "quotas": {"tools": ["mcp:crm/*"]},
                "degrade": [hide({"scope": "tenant", "remaining_below": "20%"}, ["mcp:crm/a"])],
            }
        },
    )
    text = describe(p)
    assert "crm: http://crm-mcp:8000/mcp, credential $CRM_MCP_TOKEN (bearer)" in text
    assert (
        "mcp:crm/delete_*  50 RISK_POINTS on its action budgets; an error or timeout is "
        "released" in text
    )
    assert "mcp:search/web  0.01 USD on the plan's USD budgets" in text
    assert "any other tool: refused (unpriced_tools: deny)" in text
    assert "MCP tools allowed: mcp:crm/*" in text
    assert (
        "degrade[0]: when tenant has less than 20% left on any of its budgets: hide MCP "
        "tools mcp:crm/a (LLM calls unchanged)" in text
    )
    assert "10 EMAILS per day (actions)" in text
