"""The ledger equals what the provider billed, shadow mode records real spend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from support import chat, chat_prompt_tokens, line, mini_cost, mini_reserved, policy, usd

from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack


async def test_ledger_equals_upstream_billing_after_a_mixed_run(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(fail_every=4, completion_fraction=0.7, chunks=3))
    pol = policy(
        tmp_path, "tenant: {limit: 50, period: month}\nworkflow: {limit: 20, period: month}"
    )
    bodies = [
        chat(f"question {i} " * (i + 1), max_tokens=10 + i, stream=i % 2 == 1) for i in range(24)
    ]
    headers = {"X-Cycles-Tenant": "alpha", "X-Cycles-Workflow": "mixed"}
    async with (
        local_stack(pol, store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as session,
    ):

        async def send(body: dict[str, object]) -> int:
            async with session.post(
                f"{stack.url}/v1/chat/completions", json=body, headers=headers
            ) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(send(b) for b in bodies))
        assert statuses.count(500) == 6 and statuses.count(200) == 18
        billed = sum(mini_cost(b.prompt_tokens, b.completion_tokens) for b in fake.billed)
        assert len(fake.billed) == 18
        tenant = await line(stack.ledger, "alpha", "tenant")
        workflow = await line(stack.ledger, "alpha", "workflow", "mixed")
        assert (tenant.spent, tenant.reserved) == (billed, 0)
        assert (workflow.spent, workflow.reserved) == (billed, 0)


async def test_shadow_tenant_over_budget_is_served_and_its_real_spend_recorded(
    tmp_path: Path, store_url: str
) -> None:
    body = chat()
    cost = mini_cost(chat_prompt_tokens(body), 100)
    # The limit holds one reservation: the first call fits, its charge leaves less than another.
    reserved = mini_reserved(chat_prompt_tokens(body), 100)
    pol = policy(tmp_path, f"tenant: {{limit: {usd(reserved)}, period: month}}")
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as session:
        shadow = []
        for _ in range(3):
            async with session.post(
                f"{stack.url}/v1/chat/completions", json=body, headers={"X-Cycles-Tenant": "gamma"}
            ) as r:
                assert r.status == 200
                assert r.headers["X-Cycles-Decision"] == "ALLOW"
                shadow.append(r.headers["X-Cycles-Shadow-Decision"])
        assert shadow == ["ALLOW", "DENY budget tenant", "DENY budget tenant"]
        assert stack.fake.calls == 3
        tenant = await line(stack.ledger, "gamma", "tenant")
        assert (tenant.spent, tenant.reserved) == (3 * cost, 0)
        assert tenant.spent > reserved  # past the limit: the balance shows real usage


async def test_global_shadow_mode_rewrites_nothing(tmp_path: Path) -> None:
    pol = policy(tmp_path, "tenant: {limit: 0.000001, period: month}", mode="shadow")
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        async with session.post(
            f"{stack.url}/v1/chat/completions", json=body, headers={"X-Cycles-Tenant": "alpha"}
        ) as r:
            assert r.status == 200
            assert r.headers["X-Cycles-Shadow-Decision"] == "DENY budget tenant"
        sent = stack.fake.requests[-1][2]
        assert "max_completion_tokens" not in sent and "max_tokens" not in sent


async def test_hard_bound_writes_a_completion_limit(tmp_path: Path) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        async with session.post(
            f"{stack.url}/v1/chat/completions", json=body, headers={"X-Cycles-Tenant": "alpha"}
        ) as r:
            assert r.status == 200
        assert stack.fake.requests[-1][2]["max_completion_tokens"] == 100  # the plan's default
        tenant = await line(stack.ledger, "alpha", "tenant")
        assert tenant.spent == mini_cost(chat_prompt_tokens(body), 100)
