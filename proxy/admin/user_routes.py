"""A tenant's end users (issue 18), as the admin API and the dashboard show them: the top
spenders of each end-user budget of its plan in the period current now, and one user's lines.

Bounded: a tenant may have millions of end users, so neither reads them all into memory or
into an answer. The top `limit` (at most MAX_TOP) of each budget are found a batch at a time
(Ledger.top_spenders); one user's lines are read by name (Ledger.lines), one round trip. The
tenant's /balances leaves end users out for the same reason.

A user is named as clients send it (`GET …/users/alice@example.com`): under `user_ids: hash` it
is hashed with the proxy's secret before the lookup, and the answer gives the id as kept.
"""

from __future__ import annotations

from aiohttp import web

from proxy.admin import views
from proxy.admin.api import ok, record_of
from proxy.admin.shared import ledger, runtime
from proxy.core.errors import BadRequest
from proxy.core.types import END_USER
from proxy.policy.runtime import Budget, Plan
from proxy.store.ledger.base import BalanceRow, BudgetLine, Ledger
from proxy.store.tenants import TenantRecord
from proxy.store.tenants.records import utc_offset_min

DEFAULT_TOP = 20
MAX_TOP = 1000


def user_budgets(plan: Plan | None) -> list[Budget]:
    """The plan's budgets on end users: the call budget, then the action budgets."""
    if plan is None:
        return []
    return [b for b in (*plan.budgets, *plan.action_budgets) if b.level == END_USER]


async def top_users(
    store: Ledger, record: TenantRecord, plan: Plan | None, limit: int
) -> list[BalanceRow]:
    """The `limit` end users who spent most in the current period of each end-user budget of
    the plan, most first, budget by budget."""
    budgets = user_budgets(plan)
    if not budgets:
        return []
    probes = [BudgetLine(END_USER, "-", b.unit, b.period, b.limit) for b in budgets]
    current = await store.lines(record.id, probes, utc_offset_min(record.timezone))
    rows: list[BalanceRow] = []
    for line in current:
        unit, pid = line.line.unit, line.period_id
        rows += await store.top_spenders(record.id, END_USER, unit, pid, limit)
    return rows


async def user_lines(
    store: Ledger, record: TenantRecord, plan: Plan | None, user: str
) -> list[BalanceRow]:
    """The end user's line on each end-user budget of the plan, in the period current now
    (zero where it has spent nothing)."""
    lines = [BudgetLine(END_USER, user, b.unit, b.period, b.limit) for b in user_budgets(plan)]
    if not lines:
        return []
    got = await store.lines(record.id, lines, utc_offset_min(record.timezone))
    return [
        BalanceRow(END_USER, user, g.line.unit, g.period_id, g.spent, g.reserved, g.credit)
        for g in got
    ]


async def list_users(request: web.Request) -> web.StreamResponse:
    """GET /admin/v1/tenants/{tenant}/users[?limit=]: the top spenders."""
    record = await record_of(request)
    try:
        limit = min(max(int(request.query.get("limit", str(DEFAULT_TOP))), 1), MAX_TOP)
    except ValueError:
        raise BadRequest("'limit' must be a number.", param="limit") from None
    policy = runtime(request).policy
    plan = policy.plans.get(record.plan)
    rows = await top_users(ledger(request), record, plan, limit)
    data = [views.balance_json(row, record, plan) for row in rows]
    return ok({"tenant": record.id, "user_ids": policy.user_ids, "limit": limit, "data": data})


async def get_user(request: web.Request) -> web.StreamResponse:
    """GET /admin/v1/tenants/{tenant}/users/{user}: one end user's lines."""
    record = await record_of(request)
    user = runtime(request).users.kept(record.id, request.match_info["user"], "user")
    plan = runtime(request).policy.plans.get(record.plan)
    rows = await user_lines(ledger(request), record, plan, user)
    data = [views.balance_json(row, record, plan) for row in rows]
    return ok({"tenant": record.id, "user": user, "data": data})
