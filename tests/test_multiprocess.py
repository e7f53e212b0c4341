"""Two proxy processes sharing one Redis enforce one budget: no overspend across replicas."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from conftest import free_port
from support import chat, chat_prompt_tokens, line, mini_cost, policy, usd

from proxy.fake_upstream import FakeUpstream
from proxy.ledger import open_ledger
from proxy.local import serving
from proxy.policy.runtime import ReservationSettings


@asynccontextmanager
async def proxy_process(
    policy_path: Path, store: str, upstream: str, key: str
) -> AsyncIterator[str]:
    port = free_port()
    env = {**os.environ, "OPENAI_API_KEY": key}
    args = ["serve", "--policy", str(policy_path), "--store", store, "--upstream", upstream]
    # Nothing is in flight when the test ends: a sidecar need not keep serving after SIGTERM.
    args += ["--admin-listen", "off", "--drain-timeout", "0"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", *args, "--listen", f"127.0.0.1:{port}", env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert proc.returncode is None, "proxy process exited at start"
                await asyncio.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)


async def test_two_processes_on_one_redis_forward_exactly_the_budget(
    tmp_path: Path, redis_url: str
) -> None:
    body = chat()
    cost = mini_cost(chat_prompt_tokens(body), 100)
    policy(tmp_path, f"tenant: {{limit: {usd(10 * cost)}, period: month}}")
    fake = FakeUpstream()
    async with serving(fake.app()) as fake_url:
        upstream = fake_url + "/v1"
        key = fake.settings.api_key
        async with (
            proxy_process(tmp_path / "policy.yaml", redis_url, upstream, key) as one,
            proxy_process(tmp_path / "policy.yaml", redis_url, upstream, key) as two,
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
    assert sum(mini_cost(b.prompt_tokens, b.completion_tokens) for b in fake.billed) <= 10 * cost
    ledger = open_ledger(redis_url, ReservationSettings())
    try:
        tenant = await line(ledger, "alpha", "tenant")
        assert (tenant.spent, tenant.reserved) == (10 * cost, 0)
    finally:
        await ledger.close()


async def test_runs_per_day_holds_across_two_processes(tmp_path: Path, redis_url: str) -> None:
    policy(tmp_path, "tenant: {limit: 50, period: month}", plan="quotas: {runs_per_day: 20}")
    fake = FakeUpstream()
    async with serving(fake.app()) as fake_url:
        upstream = fake_url + "/v1"
        key = fake.settings.api_key
        async with (
            proxy_process(tmp_path / "policy.yaml", redis_url, upstream, key) as one,
            proxy_process(tmp_path / "policy.yaml", redis_url, upstream, key) as two,
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
