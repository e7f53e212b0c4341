"""Which tools a tenant sees and may call: those its plan's `quotas.tools` allows, less those a
firing hide rule hides. tools/list answers (JSON or SSE) are filtered on the way down, and a
call to a hidden tool is refused before it reaches the server."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from proxy.budget.directory import TenantConfig
from proxy.gateway.admission import ACTION
from proxy.mcp import pricing
from proxy.mcp.forward import Hop
from proxy.mcp.upstream import Rewrite
from proxy.policy.tools import tool_key
from proxy.store.ledger.base import BudgetLine, LineBalance

Why = Callable[[str], str | None]
"""Why a tool (by name) is hidden from this caller; None when it is not."""


async def hidden(hop: Hop, tenant: TenantConfig, tool: str | None = None) -> Why:
    """What hides each tool of hop's server from this caller now (one ledger read, only when
    a hide rule of the plan could hide it: any tool for a listing, `tool` for a call)."""

    async def read(lines: Sequence[BudgetLine]) -> list[LineBalance]:
        reading = hop.admission.ledger.lines(hop.scope.tenant, lines, tenant.utc_offset_min())
        return await hop.admission.store_op("lines", reading)

    plan, server = tenant.plan, hop.server.name
    rules = pricing.hide_rules(plan) if tool is None else plan.hiding(server, tool)
    fired = await pricing.firing(tenant, hop.scope, read, rules)

    def why(tool: str) -> str | None:
        key = tool_key(server, tool)
        if not plan.quotas.tool_allowed(server, tool):
            return f"Tool {key} is not available on plan {plan.name!r} (quotas.tools)."
        rule = next((r for r in plan.hiding(server, tool) if r.index in fired), None)
        if rule is not None:
            return (
                f"Tool {key} is unavailable while the {rule.level} budget is low "
                f"({rule.name}: hide_tools)."
            )
        return None

    return why


async def rewrite(hop: Hop) -> Rewrite:
    """What filters a tools/list answer for this caller."""
    tenant = await hop.admission.tenant(hop.scope.tenant, ACTION)
    why = await hidden(hop, tenant)

    def keep_visible(message: dict[str, Any]) -> dict[str, Any] | None:
        result = message.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
            return None
        tools = result["tools"]
        shown = [t for t in tools if isinstance(t, dict) and why(str(t.get("name"))) is None]
        return {**message, "result": {**result, "tools": shown}}

    return keep_visible
