"""SIGTERM drains: streams in flight finish, every call settles, and the process exits 0. A gateway
stops accepting at once; a sidecar keeps serving its pod's app until the drain timeout, or until
told the app has exited (POST /quitquitquit)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from unittest import mock

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from support import chat, eventually, line, mini_cost, policy, printed, proxy_in_front_of

from proxy.core.errors import Forbidden
from proxy.core.types import ReservationSettings
from proxy.gateway import handlers
from proxy.store.api_keys import RedisKeyStore
from proxy.store.open import open_store
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream

STREAMS = 20


async def stream(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> bytes:
    body = chat(stream=True)
    async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def started(fake: FakeUpstream, count: int) -> None:
    await eventually(lambda: fake.in_flight >= count, f"{count} streams reaching the upstream")


async def assert_settled(store: str, fake: FakeUpstream) -> None:
    stores = open_store(store, ReservationSettings())
    ledger = stores.ledger
    try:
        tenant = await line(ledger, "alpha", "tenant")
        billed = sum(mini_cost(b.prompt_tokens, b.completion_tokens) for b in fake.billed)
        assert (tenant.spent, tenant.reserved) == (billed, 0)
    finally:
        await stores.close()


@pytest.mark.timeout(60)
async def test_gateway_sigterm_finishes_streams_in_flight_refuses_new_ones_and_exits_0(
    tmp_path: Path, redis_url: str
) -> None:
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    path = tmp_path / "policy.yaml"
    path.write_text(path.read_text().replace("identity: header", "identity: api_key"))
    keys = RedisKeyStore(redis_url)
    plain, _ = await keys.create("alpha")
    await keys.close()
    fake = FakeUpstream(FakeSettings(chunks=20, chunk_delay=0.05))
    async with (
        proxy_in_front_of(fake, path, redis_url, 30) as (url, proc),
        aiohttp.ClientSession() as session,
    ):
        headers = {"Authorization": f"Bearer {plain}"}
        calls = [asyncio.ensure_future(stream(session, url, headers)) for _ in range(STREAMS)]
        await started(fake, STREAMS)
        proc.send_signal(signal.SIGTERM)
        bodies = await asyncio.gather(*calls)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as fresh:
                await stream(fresh, url, headers)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert all(body.rstrip().endswith(b"data: [DONE]") for body in bodies)
    assert fake.calls == STREAMS
    await assert_settled(redis_url, fake)


@pytest.mark.timeout(60)
async def test_a_gateway_has_no_quitquitquit(tmp_path: Path, redis_url: str) -> None:
    """Only a sidecar has an app next to it whose exit ends the proxy: in a gateway, whatever
    reaches it from loopback (a mesh's own proxy, say) cannot stop the replica."""
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    path = tmp_path / "policy.yaml"
    path.write_text(path.read_text().replace("identity: header", "identity: api_key"))
    async with (
        proxy_in_front_of(FakeUpstream(FakeSettings()), path, redis_url, 30) as (url, proc),
        aiohttp.ClientSession() as session,
    ):
        async with session.post(url + "/quitquitquit") as r:
            assert r.status == 404
        async with session.get(url + "/healthz") as r:
            assert r.status == 200
        assert proc.returncode is None


@pytest.mark.timeout(60)
async def test_sidecar_sigterm_keeps_serving_until_the_drain_timeout_then_exits_0(
    tmp_path: Path, redis_url: str
) -> None:
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    fake = FakeUpstream(FakeSettings(chunks=20, chunk_delay=0.05))
    drain = 3.0
    async with (
        proxy_in_front_of(fake, tmp_path / "policy.yaml", redis_url, drain) as (url, proc),
        aiohttp.ClientSession() as session,
    ):
        headers = {"X-Cycles-Tenant": "alpha"}
        calls = [asyncio.ensure_future(stream(session, url, headers)) for _ in range(STREAMS)]
        await started(fake, STREAMS)
        proc.send_signal(signal.SIGTERM)
        late = await stream(session, url, headers)
        bodies = [*await asyncio.gather(*calls), late]
        assert proc.returncode is None, "the sidecar still serves within the drain timeout"
        assert await asyncio.wait_for(proc.wait(), drain + 10) == 0
    assert all(body.rstrip().endswith(b"data: [DONE]") for body in bodies)
    assert fake.calls == STREAMS + 1
    await assert_settled(redis_url, fake)


@pytest.mark.timeout(60)
async def test_a_sidecar_told_the_app_exited_stops_long_before_the_drain_timeout(
    tmp_path: Path, redis_url: str
) -> None:
    """SIGTERM, then the app's exit reported with POST /quitquitquit: the streams in flight
    finish and settle, and the process exits 0 without waiting out its 60 s drain timeout."""
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    fake = FakeUpstream(FakeSettings(chunks=20, chunk_delay=0.05))
    async with (
        proxy_in_front_of(fake, tmp_path / "policy.yaml", redis_url, 60) as (url, proc),
        aiohttp.ClientSession() as session,
    ):
        headers = {"X-Cycles-Tenant": "alpha"}
        calls = [asyncio.ensure_future(stream(session, url, headers)) for _ in range(STREAMS)]
        await started(fake, STREAMS)
        proc.send_signal(signal.SIGTERM)
        await eventually(
            lambda: "SIGTERM: sidecar mode" in printed(proc), "the proxy handling SIGTERM"
        )
        assert proc.returncode is None
        async with session.post(url + "/quitquitquit") as r:
            assert (r.status, await r.json()) == (202, {"status": "stopping"})
        bodies = await asyncio.gather(*calls)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    assert all(body.rstrip().endswith(b"data: [DONE]") for body in bodies)
    await assert_settled(redis_url, fake)


@pytest.mark.timeout(60)
async def test_a_native_sidecar_drains_at_sigterm_when_told_to(
    tmp_path: Path, redis_url: str
) -> None:
    """--sigterm drain with identity: header (Kubernetes stops a native sidecar only after the
    app): new connections are refused at once, calls in flight finish, exit 0."""
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    fake = FakeUpstream(FakeSettings(chunks=20, chunk_delay=0.05))
    async with (
        proxy_in_front_of(
            fake,
            tmp_path / "policy.yaml",
            redis_url,
            30,
            "--sigterm",
            "drain",
        ) as (url, proc),
        aiohttp.ClientSession() as session,
    ):
        headers = {"X-Cycles-Tenant": "alpha"}
        calls = [asyncio.ensure_future(stream(session, url, headers)) for _ in range(3)]
        await started(fake, 3)
        proc.send_signal(signal.SIGTERM)
        bodies = await asyncio.gather(*calls)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as fresh:
                await stream(fresh, url, headers)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert all(body.rstrip().endswith(b"data: [DONE]") for body in bodies)
    await assert_settled(redis_url, fake)


@pytest.mark.parametrize(("peer", "status"), [("10.1.2.3", 403), ("::1", 202), ("127.0.0.1", 202)])
async def test_quitquitquit_is_taken_only_from_the_pod_itself(peer: str, status: int) -> None:
    quits: list[bool] = []
    handler = handlers.quitter(lambda: quits.append(True))
    transport = mock.Mock()
    transport.get_extra_info.return_value = (peer, 40000)
    request = make_mocked_request("POST", "/quitquitquit", transport=transport)
    if status == 403:
        with pytest.raises(Forbidden, match="loopback"):
            await handler(request)
    else:
        assert (await handler(request)).status == status
    assert quits == ([True] if status == 202 else [])
