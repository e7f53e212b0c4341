"""A tool priced in an action unit its tenant's plan budgets on no level is refused as
`unbudgeted` before the ledger (as the reservation API answers 400 unit_not_budgeted): nothing
reserved, the server not reached, the text naming the unit and the plan; and `check` warns.

Here send_email is priced {RISK_POINTS: 50} and the plan budgets EMAILS (10/day) only."""

from __future__ import annotations

import secrets
from pathlib import Path

from mcp_support import POLICY, Upstream, client, sse_upstream

from proxy.policy import load_policy
from proxy.policy.advice import warnings
from proxy.testing.local import local_stack

__all__ = ["sse_upstream"]


def policy_text(url: str) -> str:
    text = POLICY.format(url=url, timeout=30, fail_rule="reserved", unpriced="deny")
    email = '"mcp:crm/send_email"'
    return text.replace(f"{email}: {{EMAILS: 1}}", f"{email}: {{RISK_POINTS: 50}}")


async def test_a_tool_priced_in_a_unit_the_plan_does_not_budget_is_not_free(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(sse_upstream.url))
    policy = load_policy(path)
    assert policy.tool_price("crm", "send_email").unit == "RISK_POINTS"  # type: ignore[union-attr]
    to = f"free-{secrets.token_hex(4)}"
    async with local_stack(policy, store="memory://", sweep_every=None) as stack:
        async with client(stack) as mcp:
            results = [await mcp.call_tool("send_email", {"to": f"{to}-{i}"}) for i in range(12)]
        rows = await stack.ledger.balances("acme")
    ran = len(sse_upstream.sent(to))
    charged = sum(r.spent for r in rows if r.unit == "RISK_POINTS")
    texts = [r.content[0].text for r in results if r.is_error]  # type: ignore[union-attr]
    assert len(texts) == 12, f"{ran} of 12 send_email calls ran; {charged} RISK_POINTS charged"
    assert "RISK_POINTS" in texts[0] and "'starter'" in texts[0] and "not called" in texts[0]
    assert ran == 0 and charged == 0
    assert all(r.spent == 0 and r.reserved == 0 for r in rows)
    said = [w for w in warnings(policy) if "RISK_POINTS" in w and "mcp:crm/send_email" in w]
    assert said, warnings(policy)


async def test_a_level_budgets_two_action_units_and_each_tool_reserves_on_its_own(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    """`action_budgets: {tenant: [EMAILS, RISK_POINTS]}`: a RISK_POINTS tool reserves on the
    RISK_POINTS line (4 calls of 50 in 200, the fifth denied), an EMAILS tool on the EMAILS
    line, and `check` has nothing to warn about."""
    both = (
        "      tenant: [{limit: 10, unit: EMAILS, period: day}, "
        "{limit: 200, unit: RISK_POINTS, period: month}]"
    )
    text = policy_text(sse_upstream.url).replace(
        "      tenant: {limit: 10, unit: EMAILS, period: day}", both, 1
    )
    text = text.replace('"mcp:crm/slow": {EMAILS: 1}', '"mcp:crm/ping": {EMAILS: 1}')
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    policy = load_policy(path)
    assert not [w for w in warnings(policy) if "plan starter" in w]
    to = f"both-{secrets.token_hex(4)}"
    async with local_stack(policy, store="memory://", sweep_every=None) as stack:
        async with client(stack) as mcp:
            results = [await mcp.call_tool("send_email", {"to": f"{to}-{i}"}) for i in range(5)]
            pinged = await mcp.call_tool("ping", {})
        rows = {(r.level, r.unit): r.spent for r in await stack.ledger.balances("acme")}
    assert [r.is_error for r in results] == [False] * 4 + [True]
    assert "RISK_POINTS" in results[-1].content[0].text  # type: ignore[union-attr]
    assert not pinged.is_error
    assert len(sse_upstream.sent(to)) == 4
    assert rows[("tenant", "RISK_POINTS")] == 200 and rows[("tenant", "EMAILS")] == 1
