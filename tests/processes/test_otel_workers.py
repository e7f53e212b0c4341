"""`cycles-proxy serve --workers N` with OpenTelemetry on: each worker exports its own spans,
under an instance id of its own, and a SIGTERM flushes what each still holds."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest
from otel_support import receiving
from support import chat, eventually, policy, printed, proxy_in_front_of

from proxy.testing.fake_upstream import FakeUpstream

ALPHA = {"X-Cycles-Tenant": "alpha"}
CALLS = 40


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    async with session.post(url + "/v1/chat/completions", json=chat(), headers=ALPHA) as r:
        await r.read()
        return r.status


@pytest.mark.timeout(90)
async def test_each_worker_exports_its_calls_and_flushes_them_at_sigterm(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    # Batches every minute: only the stop sends them.
    async with (
        receiving(monkeypatch, batch_delay_ms=60_000) as received,
        proxy_in_front_of(
            FakeUpstream(), tmp_path / "policy.yaml", redis_url, 0, "--workers", "2"
        ) as (url, proc),
        # A fresh connection per call, so the kernel spreads them over both workers.
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
    ):
        # Each worker names its port once it listens: both, before the calls spread over them.
        await eventually(lambda: printed(proc).count("listening on") == 2, "both workers listening")
        statuses = await asyncio.gather(*(status_of(session, url) for _ in range(CALLS)))
        assert received.spans == []
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert statuses == [200] * CALLS
    calls = [span for span in received.spans if span.name == "chat gpt-4o-mini"]
    assert len(calls) == CALLS
    instances = {resource["service.instance.id"] for resource in received.resources}
    assert len(instances) == 2
