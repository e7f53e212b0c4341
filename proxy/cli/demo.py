"""`cycles-proxy demo`: the runaway-tenant story, on the embedded store, with no network.

500 customers share one provider account. customer-47's agent loops: thousands of calls, twenty
at a time. Without a per-tenant budget, the provider's org-wide cap would stop all 500; here only
customer-47 is stopped, at its $50, and the other 499 never notice. It ends with the limit
report's line (README "Reports") for customer-47 and for a quiet tenant.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from pathlib import Path

import aiohttp

from proxy.metering.pricing import format_amount
from proxy.policy import EXAMPLE, load_policy
from proxy.policy.runtime import Policy, TenantSeed
from proxy.reports.figures import TenantReport
from proxy.reports.read import read_report
from proxy.reports.render import table_lines
from proxy.testing.fake_settings import FakeSettings
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.local import Stack, local_stack

RUNAWAY = "customer-47"
QUIET = "customer-1"
REPORT_DAYS = 30
RUNAWAY_CALLS = 6000
RUNAWAY_CONCURRENCY = 20
CALLS_PER_RUN = 25
NORMAL_CALLS = 4
WORKFLOWS = ("triage", "summarise", "reply")
PROMPT = "Summarise the attached support ticket and propose a reply. " * 20


def demo_policy(tenants: int, path: Path = EXAMPLE) -> Policy:
    """The example policy with `tenants` customers on the pro plan, customer-47 among them."""
    policy = load_policy(path)
    seeds = {f"customer-{i}": TenantSeed(f"customer-{i}", "pro") for i in range(1, tenants + 1)}
    return dataclasses.replace(policy, tenants=seeds, mode="enforce")


async def _call(
    session: aiohttp.ClientSession,
    stack: Stack,
    tenant: str,
    scope: tuple[str, str],
    outcomes: Counter[str],
) -> None:
    workflow, run = scope
    headers = {"X-Cycles-Tenant": tenant, "X-Cycles-Workflow": workflow, "X-Cycles-Run": run}
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}]}
    async with session.post(f"{stack.url}/v1/chat/completions", json=body, headers=headers) as r:
        answer = await r.json()
        outcomes[f"{tenant}:{r.status}"] += 1
        if r.headers.get("X-Cycles-Decision") == "ALLOW_WITH_CAPS":
            outcomes[f"{tenant}:caps:{r.headers['X-Cycles-Caps']}"] += 1
        if r.status == 402:
            # "Budget exceeded on workflow 'triage': ..." → which level stopped the call
            level = answer["error"]["message"].split()[3].rstrip(":")
            outcomes[f"{tenant}:402:{level}"] += 1


async def _runaway(session: aiohttp.ClientSession, stack: Stack, outcomes: Counter[str]) -> None:
    queue = iter(range(RUNAWAY_CALLS))

    async def worker() -> None:
        for i in queue:
            run = i // CALLS_PER_RUN
            workflow = WORKFLOWS[run % len(WORKFLOWS)]
            await _call(session, stack, RUNAWAY, (workflow, f"loop-{run}"), outcomes)

    await asyncio.gather(*(worker() for _ in range(RUNAWAY_CONCURRENCY)))


async def _others(
    session: aiohttp.ClientSession, stack: Stack, tenants: list[str], outcomes: Counter[str]
) -> None:
    queue = iter([(t, i) for t in tenants for i in range(NORMAL_CALLS)])

    async def worker() -> None:
        for tenant, i in queue:
            await _call(
                session, stack, tenant, (WORKFLOWS[i % len(WORKFLOWS)], f"run-{i}"), outcomes
            )

    await asyncio.gather(*(worker() for _ in range(30)))


async def _tenant_spent(stack: Stack, tenant: str) -> int:
    rows = await stack.ledger.balances(tenant)
    return sum(r.spent for r in rows if r.level == "tenant" and r.unit == "USD")


async def _demo(tenants: int) -> int:
    policy = demo_policy(tenants)
    fake = FakeUpstream(FakeSettings(completion_fraction=0.6, chunks=1))
    started = time.monotonic()
    outcomes: Counter[str] = Counter()
    async with local_stack(policy, fake=fake) as stack, aiohttp.ClientSession() as session:
        others = [t for t in policy.tenants if t != RUNAWAY]
        await asyncio.gather(
            _runaway(session, stack, outcomes), _others(session, stack, others, outcomes)
        )
        runaway_spent = await _tenant_spent(stack, RUNAWAY)
        others_spent = [await _tenant_spent(stack, t) for t in others]
        reports = await _limit_reports(stack, policy)
    limit = next(b.limit for b in policy.plans["pro"].budgets if b.level == "tenant")
    _report(tenants, outcomes, others, runaway_spent, others_spent, limit, fake)
    _print_limit_reports(reports)
    print(f"\nfinished in {time.monotonic() - started:.1f} s (embedded store, fake provider)")
    return 0


async def _limit_reports(stack: Stack, policy: Policy) -> list[TenantReport]:
    """customer-47's and a quiet tenant's limit reports, their tenant-level lines only."""
    out = []
    for tenant in dict.fromkeys((RUNAWAY, QUIET)):
        record = await stack.stores.tenants.get_tenant(tenant)
        if record is not None:
            mode = record.mode or policy.mode
            report = await read_report(stack.ledger, record, mode, REPORT_DAYS)
            lines = tuple(line for line in report.lines if line.level == "tenant")
            out.append(dataclasses.replace(report, lines=lines))
    return out


def _print_limit_reports(reports: list[TenantReport]) -> None:
    print(f"\nlimit report (cycles-proxy report --since {REPORT_DAYS}d), tenant budgets:")
    for line in table_lines(reports):
        print(f"  {line}")


def _usd(units: int) -> str:
    return format_amount(units, "USD")


def _report(
    tenants: int,
    outcomes: Counter[str],
    others: list[str],
    runaway_spent: int,
    others_spent: list[int],
    limit: int,
    fake: FakeUpstream,
) -> None:
    allowed = outcomes[f"{RUNAWAY}:200"]
    denied = outcomes[f"{RUNAWAY}:402"]
    others_calls = sum(
        n for k, n in outcomes.items() if k.count(":") == 1 and not k.startswith(RUNAWAY + ":")
    )
    others_ok = sum(outcomes[f"{t}:200"] for t in others)
    print(f"cycles-proxy demo: {tenants} tenants on the pro plan, {_usd(limit)} a month each\n")
    print(f"{'tenant':<16}{'calls':>7}{'allowed':>9}{'denied':>8}{'spent':>17}  budget")
    print(
        f"{RUNAWAY:<16}{allowed + denied:>7}{allowed:>9}{denied:>8}{_usd(runaway_spent):>17}"
        f"  {_usd(limit)}"
    )
    print(
        f"{f'{len(others)} others':<16}{others_calls:>7}{others_ok:>9}"
        f"{others_calls - others_ok:>8}{_usd(sum(others_spent)):>17}  {_usd(limit)} each"
    )
    _runaway_story(outcomes)
    within = all(s <= limit for s in others_spent)
    _verdicts(runaway_spent, limit, others_ok == others_calls and within, others_spent)
    print(f"calls the provider answered:            {len(fake.billed)}")


def _runaway_story(outcomes: Counter[str]) -> None:
    """How customer-47 was stopped: its denials by scope, and its calls degraded before."""
    by_level = ", ".join(
        f"{k.rsplit(':', 1)[1]} {n}"
        for k, n in sorted(outcomes.items())
        if k.startswith(f"{RUNAWAY}:402:")
    )
    print(f"\ncustomer-47's denials (402) by the scope that stopped them: {by_level or 'none'}")
    degraded = sum(n for k, n in outcomes.items() if k.startswith(f"{RUNAWAY}:caps:"))
    kinds = sorted(
        {k.split(":", 2)[2].split("=")[0] for k in outcomes if k.startswith(f"{RUNAWAY}:caps:")}
    )
    print(
        f"customer-47's calls degraded before the wall (ALLOW_WITH_CAPS): {degraded}"
        + (f" ({', '.join(kinds)})" if kinds else "")
    )


def _verdicts(runaway_spent: int, limit: int, others_fine: bool, others_spent: list[int]) -> None:
    """Whether the runaway stopped at its budget and every other tenant was served within its."""
    verdict = "yes" if runaway_spent <= limit else "NO"
    print(
        f"customer-47 stopped at its budget:      {verdict} "
        f"({_usd(runaway_spent)} of {_usd(limit)})"
    )
    fine = "yes" if others_fine else "NO"
    print(
        f"other tenants all allowed, in budget:   {fine} "
        f"(largest spend {_usd(max(others_spent, default=0))})"
    )


def run_demo(tenants: int = 500) -> int:
    return asyncio.run(_demo(tenants))
