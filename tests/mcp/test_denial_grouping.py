"""ADV3: denials are now grouped per (minute, reason, scope, action), and `action` is the tool
name the CLIENT sent (tool_key(server, tool)), not the policy's price key. Any tool name the
proxy accepts ([A-Za-z0-9_.-/]{1,128}) reaches the ledger when the server allows unpriced tools
(or a glob price like `mcp:crm/delete_*` matches it), so a client that varies the name gets one
audit entry (and one `q|agg|…` field, kept for the retention) per denied call: the per-minute
aggregation that bounded denial floods (one entry per reason and scope a minute) no longer
holds. Here: a run out of steps (steps_per_run 3) calls 25 made-up tools: 25 DENY entries."""

from __future__ import annotations

from pathlib import Path

from mcp_support import Upstream, client, proxy, sse_upstream

__all__ = ["sse_upstream"]


async def test_denials_of_made_up_tool_names_are_not_aggregated(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    async with proxy(tmp_path, sse_upstream, unpriced="allow") as stack:
        async with client(stack, tenant="steps", **{"X-Cycles-Run": "flood"}) as mcp:
            for _ in range(3):
                assert not (await mcp.call_tool("ping", {})).is_error
            for i in range(25):
                result = await mcp.call_tool(f"probe_{i}", {})
                assert result.is_error
        denied = await stack.stores.tenants.audit("steps", decision="DENY")
    actions = sorted({e.fields.get("action", "") for e in denied})
    # The policy prices 7 tools; denials of one reason and scope in one minute should fold into
    # at most one entry per priced key plus one for everything unpriced.
    assert len(denied) <= 8, f"{len(denied)} DENY entries in one minute; actions {actions[:5]}…"
