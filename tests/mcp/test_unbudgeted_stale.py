"""ADV3: the `unbudgeted` refusal (proxy/mcp/calls._refused) is decided on the tenant config
cached before the reserve, but `Admission.fresh` reloads the config when the ledger says it is
stale and builds the reservation from the NEW plan (pricing.reserve_request -> lines_of) without
asking `unbudgeted` again. A tenant moved to a plan that budgets the tool's unit nowhere gets a
reservation with no lines: the ledger allows it, the tool runs, nothing is reserved or charged.

Scenario: acme on `starter` (EMAILS 10/day) calls send_email once (config cached); the operator
moves acme to `bare` (USD budget only, no action_budgets); the next send_email must be refused
as unbudgeted (as it is once the cache is fresh) but runs for free."""

from __future__ import annotations

import secrets
from pathlib import Path

from mcp_support import POLICY, Upstream, client, sse_upstream

from proxy.policy import load_policy
from proxy.testing.local import local_stack

__all__ = ["sse_upstream"]

BARE = """  bare:
    budgets:
      tenant: {limit: 5, period: month}
"""


async def test_plan_change_to_a_plan_without_the_unit_runs_the_tool_unreserved(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    text = POLICY.format(url=sse_upstream.url, timeout=30, fail_rule="reserved", unpriced="deny")
    text = text.replace("plans:\n", "plans:\n" + BARE, 1)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    policy = load_policy(path)
    to = f"stale-{secrets.token_hex(4)}"
    async with local_stack(policy, store="memory://", sweep_every=None) as stack:
        async with client(stack) as mcp:
            first = await mcp.call_tool("send_email", {"to": f"{to}-0"})
            assert not first.is_error
            await stack.stores.tenants.update_tenant(
                "acme", actor="op", reason="downgrade", plan="bare"
            )
            second = await mcp.call_tool("send_email", {"to": f"{to}-1"})
        rows = await stack.ledger.balances("acme")
    ran = sse_upstream.sent(to)
    charged = [(r.level, r.unit, r.spent, r.reserved) for r in rows if r.unit == "EMAILS"]
    assert second.is_error, (
        f"send_email ran under plan 'bare' (no EMAILS budget): upstream saw {ran}; "
        f"EMAILS rows {charged}"
    )
    assert ran == [f"{to}-0"]
