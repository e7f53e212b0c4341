"""The MCP part of `cycles-proxy check`: each server, and what each of its tools costs."""

from __future__ import annotations

from collections.abc import Callable

from proxy.policy.advice import budgets_unit
from proxy.policy.runtime import Policy
from proxy.policy.tools import McpServer, ToolPrice

_INDENT = "  "
Amount = Callable[[int, str], str]


def mcp_section(policy: Policy, amount: Amount) -> list[str]:
    """`MCP servers`, each with its prices in lookup order (exact names, then globs)."""
    lines = ["MCP servers (/mcp/<name>)"]
    for server in policy.mcp_servers.values():
        lines.append(f"{_INDENT}{server.name}: {_server(server)}")
        prices = [p for p in policy.tool_prices if p.server == server.name]
        width = max((len(p.key) for p in prices), default=0)
        lines += [
            f"{_INDENT * 2}{p.key:<{width}}  {_price(p, amount)}{_refused(policy, p)}"
            for p in prices
        ]
        unpriced = "refused" if server.unpriced_tools == "deny" else "relayed at no cost"
        lines.append(
            f"{_INDENT * 2}any other tool: {unpriced} (unpriced_tools: {server.unpriced_tools})"
        )
    return lines


def _server(server: McpServer) -> str:
    credential = (
        f"credential ${server.token_env} ({server.auth})" if server.token_env else "no credential"
    )
    return f"{server.url}, {credential}, tool calls time out after {server.timeout_ms // 1000}s"


def _price(price: ToolPrice, amount: Amount) -> str:
    where = "on the plan's USD budgets" if price.unit == "USD" else "on its action budgets"
    error = "charged" if price.charge_on_error == "reserved" else "released"
    return f"{amount(price.amount, price.unit)} {where}; an error or timeout is {error}"


def _refused(policy: Policy, price: ToolPrice) -> str:
    """The plans whose tenants this tool is refused for (their plan does not budget its unit)."""
    plans = [plan.name for plan in policy.plans.values() if not budgets_unit(plan, price.unit)]
    if not plans:
        return ""
    named = f"plan{'s' if len(plans) > 1 else ''} {', '.join(plans)}"
    return f"; refused for {named} (no {price.unit} budget)"
