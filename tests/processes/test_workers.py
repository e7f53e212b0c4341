"""`cycles-proxy serve --workers N`: N processes share the port (SO_REUSEPORT), each with its own
event loop and Redis pool, one budget between them; signals reach every worker."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from support import (
    admits_exactly,
    chat,
    chat_prompt_tokens,
    eventually,
    line,
    mini_cost,
    mini_reserved,
    policy,
    printed,
    proxy_in_front_of,
    usd,
)

from proxy.core.types import ReservationSettings
from proxy.store.open import open_store
from proxy.store.redis import layout
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream

ALPHA = {"X-Cycles-Tenant": "alpha"}


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


async def status_of(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> int:
    async with session.post(url + "/v1/chat/completions", json=body, headers=ALPHA) as r:
        await r.read()
        return r.status


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def owners_of_settled_calls(redis_url: str) -> set[int]:
    """The pids of the instances that reserved alpha's calls (a record's 4th word is its owner,
    `<host>-<pid>-<hex>`; settled records stay as tombstones)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        records = await client.hvals(layout.tenant_keys("alpha")[2])
    finally:
        await client.aclose()
    return {int(record.split()[3].rsplit("-", 2)[1]) for record in records}


@pytest.mark.timeout(90)
async def test_two_workers_share_the_port_and_one_budget(tmp_path: Path, redis_url: str) -> None:
    body = chat()
    prompt = chat_prompt_tokens(body)
    cost, reserved = mini_cost(prompt, 100), mini_reserved(prompt, 100)
    assert admits_exactly(10, reserved, cost)
    policy(tmp_path, f"tenant: {{limit: {usd(10 * reserved)}, period: month}}")
    fake = FakeUpstream()
    async with (
        proxy_in_front_of(
            fake,
            tmp_path / "policy.yaml",
            redis_url,
            0,
            "--workers",
            "2",
        ) as (url, proc),
        # A fresh connection per call, so the kernel spreads them over both workers.
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
    ):
        workers = children(proc.pid)
        assert len(workers) == 2

        statuses = await asyncio.gather(*(status_of(session, url, body) for _ in range(200)))
        owners = await owners_of_settled_calls(redis_url)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert statuses.count(200) == 10 and statuses.count(402) == 190
    assert fake.calls == 10
    assert owners <= workers
    stores = open_store(redis_url, ReservationSettings())
    ledger = stores.ledger
    try:
        tenant = await line(ledger, "alpha", "tenant")
        assert (tenant.spent, tenant.reserved) == (10 * cost, 0)
    finally:
        await stores.close()


@pytest.mark.timeout(90)
async def test_both_workers_serve_calls(tmp_path: Path, redis_url: str) -> None:
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    fake = FakeUpstream()
    async with (
        proxy_in_front_of(
            fake,
            tmp_path / "policy.yaml",
            redis_url,
            0,
            "--workers",
            "2",
        ) as (url, proc),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
    ):
        workers = children(proc.pid)

        for _ in range(10):  # the kernel hashes each connection to a worker: a few rounds do
            calls = (status_of(session, url, chat()) for _ in range(20))
            assert set(await asyncio.gather(*calls)) == {200}
            if len(await owners_of_settled_calls(redis_url)) == 2:
                break
        assert await owners_of_settled_calls(redis_url) == workers


@pytest.mark.timeout(90)
async def test_quitquitquit_reaching_one_worker_stops_them_all(
    tmp_path: Path, redis_url: str
) -> None:
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    fake = FakeUpstream(FakeSettings(chunks=10, chunk_delay=0.05))
    async with (
        proxy_in_front_of(
            fake,
            tmp_path / "policy.yaml",
            redis_url,
            60,
            "--workers",
            "2",
        ) as (url, proc),
        aiohttp.ClientSession() as session,
    ):
        workers = children(proc.pid)
        await eventually(
            lambda: printed(proc).count("cycles-proxy listening") == 2, "both workers listening"
        )
        proc.send_signal(signal.SIGTERM)  # identity: header, so the workers keep serving
        await eventually(
            lambda: printed(proc).count("SIGTERM: sidecar mode") == 2,
            "both workers handling SIGTERM",
        )
        async with session.post(url + "/v1/chat/completions", json=chat(), headers=ALPHA) as r:
            assert r.status == 200
        async with session.post(url + "/quitquitquit") as r:
            assert r.status == 202
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert not any(alive(pid) for pid in workers)
