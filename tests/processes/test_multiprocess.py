"""Two proxy processes sharing one Redis enforce one budget: no overspend across replicas."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from support import (
    admits_exactly,
    chat,
    chat_prompt_tokens,
    line,
    mini_cost,
    mini_reserved,
    policy,
    proxy_process,
    usd,
)

from proxy.core.types import ReservationSettings
from proxy.store.open import open_store
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.local import serving


@pytest.mark.parametrize("writes_at_input", [True, False], ids=["exact-fit", "default-writes"])
async def test_two_processes_on_one_redis_forward_exactly_the_budget(
    tmp_path: Path, redis_url: str, writes_at_input: bool
) -> None:
    """200 calls through 2 processes on a budget of 10 reservations admit exactly 10. With
    cache writes priced at input a call reserves exactly what it is billed, so the 10th is an
    exact fit whatever the others have settled; at the default write price (1.25 × input) each
    leaves some of its reservation unspent, never enough for an 11th."""
    body = chat()
    prompt = chat_prompt_tokens(body)
    cost = mini_cost(prompt, 100)
    reserved = cost if writes_at_input else mini_reserved(prompt, 100)
    assert admits_exactly(10, reserved, cost)
    budget = f"tenant: {{limit: {usd(10 * reserved)}, period: month}}"
    policy(tmp_path, budget, writes_at_input=writes_at_input)
    fake = FakeUpstream()
    async with serving(fake.app()) as fake_url:
        upstream = fake_url + "/v1"
        key = fake.settings.api_key
        async with (
            proxy_process(tmp_path / "policy.yaml", redis_url, upstream, key) as (one, _),
            proxy_process(tmp_path / "policy.yaml", redis_url, upstream, key) as (two, _),
            aiohttp.ClientSession() as session,
        ):

            async def send(url: str) -> int:
                async with session.post(
                    url + "/v1/chat/completions", json=body, headers={"X-Cycles-Tenant": "alpha"}
                ) as r:
                    await r.read()
                    return r.status

            statuses = await asyncio.gather(*(send(one if i % 2 else two) for i in range(200)))
    assert statuses.count(200) == 10 and statuses.count(402) == 190
    assert fake.calls == 10
    assert sum(mini_cost(b.prompt_tokens, b.completion_tokens) for b in fake.billed) == 10 * cost
    stores = open_store(redis_url, ReservationSettings())
    ledger = stores.ledger
    try:
        tenant = await line(ledger, "alpha", "tenant")
        assert (tenant.spent, tenant.reserved) == (10 * cost, 0)
    finally:
        await stores.close()


async def test_runs_per_day_holds_across_two_processes(tmp_path: Path, redis_url: str) -> None:
    policy(tmp_path, "tenant: {limit: 50, period: month}", plan="quotas: {runs_per_day: 20}")
    fake = FakeUpstream()
    async with serving(fake.app()) as fake_url:
        upstream = fake_url + "/v1"
        key = fake.settings.api_key
        async with (
            proxy_process(tmp_path / "policy.yaml", redis_url, upstream, key) as (one, _),
            proxy_process(tmp_path / "policy.yaml", redis_url, upstream, key) as (two, _),
            aiohttp.ClientSession() as session,
        ):

            async def send(i: int) -> int:
                headers = {"X-Cycles-Tenant": "alpha", "X-Cycles-Run": f"run-{i}"}
                url = one if i % 2 else two
                async with session.post(
                    url + "/v1/chat/completions", json=chat(), headers=headers
                ) as r:
                    await r.read()
                    return r.status

            statuses = await asyncio.gather(*(send(i) for i in range(200)))
    assert statuses.count(200) == 20 and statuses.count(429) == 180
    assert fake.calls == 20
