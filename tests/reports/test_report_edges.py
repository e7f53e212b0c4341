"""The limit report on edge histories (empty, zero limits, huge token counts, lifetime lines,
runs, a new tenant), through the admin route on every store."""

from __future__ import annotations

import uuid
from pathlib import Path

from reports_support import LIMITS, admin, get

from proxy.store.ledger.base import BudgetLine, Candidate, ReserveRequest
from proxy.store.tenants import TenantRecord

USD = 10**8


async def _call(stack, tenant: str, lines, est: dict, act: dict | None, run=None) -> None:  # type: ignore[no-untyped-def]
    req = ReserveRequest(tenant, uuid.uuid4().hex, lines, [Candidate(est)], run=run)
    res = await stack.stores.ledger.reserve(req)
    if res.reservation is not None and act is not None:
        await stack.stores.ledger.commit(res.reservation, act)


async def _report(url: str, client, tenant: str) -> dict:  # type: ignore[no-untyped-def]
    got, answer = await get(client, f"{url}{LIMITS}?tenant={tenant}&since=30d")
    assert got == 200, answer
    return answer["data"][0]


async def test_edge_histories_answer_200(tmp_path: Path, store_url: str) -> None:
    async with admin(tmp_path, store_url) as (url, stack, client):
        for t in ("empty", "zero", "tok", "life", "runs"):
            await stack.stores.tenants.create_tenant(TenantRecord(t, "t"), actor="test")
        assert (await _report(url, client, "empty"))["lines"] == []
        await _call(
            stack, "zero", [BudgetLine("tenant", "zero", "USD", "day", 0)], {"USD": 1}, None
        )
        await _call(
            stack,
            "tok",
            [BudgetLine("tenant", "tok", "TOKENS", "month", 10**15)],
            {"TOKENS": 10**14},
            {"TOKENS": 10**14},
        )
        await _call(
            stack,
            "life",
            [BudgetLine("tenant", "life", "USD", "none", 100 * USD)],
            {"USD": USD},
            {"USD": USD},
        )
        await _call(
            stack,
            "runs",
            [BudgetLine("run", "r1", "USD", "none", 100 * USD)],
            {"USD": USD},
            {"USD": USD},
            run="r1",
        )
        for t in ("zero", "tok", "runs"):
            await _report(url, client, t)
        await _report(url, client, "life")


async def test_a_lifetime_line_reports_its_spent_and_forecast(
    tmp_path: Path, store_url: str
) -> None:
    async with admin(tmp_path, store_url) as (url, stack, client):
        await stack.stores.tenants.create_tenant(TenantRecord("life", "t"), actor="test")
        await _call(
            stack,
            "life",
            [BudgetLine("tenant", "life", "USD", "none", 100 * USD)],
            {"USD": USD},
            {"USD": USD},
        )
        life = (await _report(url, client, "life"))["lines"][0]
        # A lifetime (period none) line has spent 1 USD in its only period, which never ends.
        assert life["spent_this_period"]["units"] == USD, life
        assert life["forecast"]["units"] == USD, life


async def test_a_new_tenants_recommendation_is_not_below_its_own_forecast(
    tmp_path: Path, store_url: str
) -> None:
    """Days before the tenant's first rollup count as zero spend: one day of $10 on a $100
    month line gives p95 = 0, and the recommendation falls to observed-max = $10 for the
    whole month, below the report's own forecast for the period."""
    async with admin(tmp_path, store_url) as (url, stack, client):
        await stack.stores.tenants.create_tenant(TenantRecord("fresh", "t"), actor="test")
        line = BudgetLine("tenant", "fresh", "USD", "month", 100 * USD)
        await _call(stack, "fresh", [line], {"USD": 10 * USD}, {"USD": 10 * USD})
        rep = (await _report(url, client, "fresh"))["lines"][0]
        rec, fc = rep["recommended_limit"]["units"], rep["forecast"]["units"]
        assert rec >= fc, (rep["recommended_limit"], rep["recommended_rule"], rep["forecast"])
