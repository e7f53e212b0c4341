"""Faults with real processes: Redis killed and restarted under load, a proxy killed mid-stream,
and four replicas racing one budget. Each test starts its own redis-server so it can kill it.

`pytest -m soak` runs the long variant (several outages under sustained load)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from hooks_support import quota_counters
from support import (
    RedisProc,
    chat,
    chat_prompt_tokens,
    eventually,
    line,
    mini_cost,
    mini_reserved,
    policy,
    proxy_in_front_of,
    proxy_process,
    usd,
)

from proxy.core.tasks import spawn
from proxy.core.types import ReservationSettings
from proxy.gateway import spill
from proxy.gateway.context import FAIL_OPEN
from proxy.gateway.spill import Buckets, Spill
from proxy.policy.runtime import Policy
from proxy.store.ledger.base import BudgetLine, Candidate, ReserveRequest
from proxy.store.ledger.redis import RedisLedger
from proxy.store.open import open_store
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack, serving

ALPHA = {"X-Cycles-Tenant": "alpha"}


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProc]:
    server = RedisProc(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


def billed_cost(fake: FakeUpstream) -> int:
    return sum(mini_cost(b.prompt_tokens, b.completion_tokens) for b in fake.billed)


async def spent(url: str, tenant: str = "alpha") -> tuple[int, int]:
    stores = open_store(url, ReservationSettings())
    ledger = stores.ledger
    try:
        row = await line(ledger, tenant, "tenant")
        return row.spent, row.reserved
    finally:
        await stores.close()


async def spent_reaches(url: str, expected: int) -> None:
    """Wait until the tenant's spent is `expected` (spilled settles drain every second)."""

    async def reached() -> bool:
        return (await spent(url))[0] == expected

    await eventually(reached, f"the tenant's spent reaching {expected}")


async def alone_on(server: RedisProc) -> bool:
    """Whether the server has no client connected but the one asking."""
    client = aioredis.Redis(port=server.port)
    try:
        return len(await client.client_list()) == 1
    finally:
        await client.aclose()


async def outage_under_load(
    url: str, server: RedisProc, *, outages: int, up_s: float, down_s: float
) -> list[tuple[float, int, str]]:
    """Steady traffic from 8 clients while Redis is killed `outages` times, each time for
    `down_s` and restarted; returns (time, status, error code) per call."""
    results: list[tuple[float, int, str]] = []
    stop = asyncio.Event()

    async def client(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            async with session.post(url + "/v1/chat/completions", json=chat(), headers=ALPHA) as r:
                body = await r.json()
                code = body["error"]["code"] if r.status != 200 else ""
                results.append((time.monotonic(), r.status, code))
            await asyncio.sleep(0.01)

    async with aiohttp.ClientSession() as session:
        clients = [spawn(client(session), name=f"client {i}") for i in range(8)]
        for _ in range(outages):
            await asyncio.sleep(up_s)
            server.kill()
            await asyncio.sleep(down_s)
            server.start()
        # Traffic resumes without a proxy restart.
        back = time.monotonic()
        await eventually(
            lambda: any(t > back and s == 200 for t, s, _ in results),
            "a call answered 200 after Redis came back",
        )
        await asyncio.sleep(0.3)  # and goes on a while
        stop.set()
        await asyncio.gather(*clients)
    return results


async def check_closed_outage(tmp_path: Path, server: RedisProc, outages: int, up: float) -> None:
    pol = policy(tmp_path, "tenant: {limit: 1000, period: month}")
    async with local_stack(pol, store=server.url) as stack:
        results = await outage_under_load(stack.url, server, outages=outages, up_s=up, down_s=1.5)
        statuses = {s for _, s, _ in results}
        assert statuses <= {200, 503}, statuses
        assert {c for _, s, c in results if s == 503} == {"ledger_unavailable"}
        assert sum(1 for _, s, _ in results if s == 503) >= 8
        # No call was forwarded without a reservation: what the provider billed is what the
        # ledger charged (commits that failed during the outage were spilled and retried).
        expected = billed_cost(stack.fake)
        assert expected > 0
        await spent_reaches(server.url, expected)
    # Reconnecting after the outage left no connection open once the proxy stopped (the calls
    # whose connect failed together used to retry on a new connection each, never closed).
    await eventually(lambda: alone_on(server), "every connection the proxy opened to Redis closing")


async def test_redis_restart_fail_closed_forwards_nothing_unreserved(
    tmp_path: Path, redis_proc: RedisProc
) -> None:
    await check_closed_outage(tmp_path, redis_proc, outages=1, up=0.5)


@pytest.mark.soak
@pytest.mark.timeout(600)
async def test_soak_repeated_redis_outages_fail_closed(
    tmp_path: Path, redis_proc: RedisProc
) -> None:
    await check_closed_outage(tmp_path, redis_proc, outages=10, up=8.0)


async def test_redis_outage_fail_open_rate_limits_and_spills(
    tmp_path: Path, redis_proc: RedisProc
) -> None:
    pol = policy(
        tmp_path,
        "tenant: {limit: 1000, period: month}",
        plan="quotas: {requests_per_minute: 30}",
    )
    pol = dataclasses.replace(pol, fail_mode="open")
    async with local_stack(pol, store=redis_proc.url) as stack, aiohttp.ClientSession() as s:

        async def send() -> tuple[int, str]:
            async with s.post(stack.url + "/v1/chat/completions", json=chat(), headers=ALPHA) as r:
                body = await r.json()
                return r.status, body["error"]["code"] if r.status != 200 else ""

        assert await send() == (200, "")
        redis_proc.kill()
        answers = await asyncio.gather(*(send() for _ in range(50)))
        # Forwarded unbudgeted, but no faster than the plan's rate: a bucket of 30.
        assert answers.count((200, "")) == 30
        assert answers.count((429, "ledger_down_rate")) == 20
        assert stack.fake.calls == 31
        assert len(stack.app[FAIL_OPEN].spill) == 30
        redis_proc.start()
        await spent_reaches(redis_proc.url, billed_cost(stack.fake))
        assert len(stack.app[FAIL_OPEN].spill) == 0
        assert (await spent(redis_proc.url))[1] == 0


def streaming_policy(tmp_path: Path) -> Policy:
    """Room for many slow streams at once."""
    budget = "tenant: {limit: 1000, period: month}"
    return policy(tmp_path, budget, plan="quotas: {concurrent_requests: 50}")


async def streams_of_a_killed_proxy(tmp_path: Path, redis_proc: RedisProc, streams: int) -> int:
    """Open `streams` slow streams through a proxy (on tmp_path's policy) and kill it -9 while
    they hold their reservations; the estimate of each."""
    body = chat(stream=True)
    reserved = mini_reserved(chat_prompt_tokens(body), 100)
    fake = FakeUpstream(settings=FakeSettings(chunk_delay=1.0, chunks=10))
    async with (
        proxy_in_front_of(fake, tmp_path / "policy.yaml", redis_proc.url) as (url, proc),
        aiohttp.ClientSession() as session,
    ):
        responses = [
            await session.post(url + "/v1/chat/completions", json=body, headers=ALPHA)
            for _ in range(streams)
        ]
        assert [r.status for r in responses] == [200] * streams
        await asyncio.gather(*(r.content.readline() for r in responses))
        assert await spent(redis_proc.url) == (0, streams * reserved)
        proc.kill()
        await proc.wait()
        for r in responses:
            r.close()
    return reserved


async def test_killed_proxy_streams_are_reclaimed_by_another_replica(
    tmp_path: Path, redis_proc: RedisProc
) -> None:
    streaming_policy(tmp_path)
    cost = await streams_of_a_killed_proxy(tmp_path, redis_proc, 20)
    # Another replica's sweeper: it presumes the dead owner dead once its heartbeat is older
    # than 3 heartbeat intervals (0.5 s here, so 1.5 s).
    replica = RedisLedger(redis_proc.url, ReservationSettings(), heartbeat_interval_s=0.5)

    async def reclaimed() -> bool:
        await replica.heartbeat()
        await replica.sweep_all()
        return (await spent(redis_proc.url))[1] == 0

    try:
        await eventually(reclaimed, "another replica reclaiming the killed proxy's reservations")
        # on_expiry: charge (the default): each stream is charged its estimate.
        assert await spent(redis_proc.url) == (20 * cost, 0)
        counters = await quota_counters(replica, "alpha")
        assert counters.get("q|conc|tenant|alpha", 0) == 0
    finally:
        await replica.close()


async def test_a_running_replica_reclaims_a_killed_replicas_streams_by_itself(
    tmp_path: Path, redis_proc: RedisProc
) -> None:
    """Nobody drives the sweep: a second proxy, running, heartbeats and sweeps on its own, finds
    the killed replica silent and charges its open streams their reservations."""
    pol = streaming_policy(tmp_path)
    cost = await streams_of_a_killed_proxy(tmp_path, redis_proc, 5)
    # This replica heartbeats every 0.5 s and presumes an owner dead after 3 silent intervals.
    ledger = RedisLedger(redis_proc.url, pol.reservations, heartbeat_interval_s=0.5)
    try:
        async with (
            local_stack(pol, store=redis_proc.url, ledger=ledger, sweep_every=0.5) as replica,
            aiohttp.ClientSession() as session,
        ):

            async def reclaimed() -> bool:
                return (await spent(redis_proc.url))[1] == 0

            await eventually(
                reclaimed, "the running replica reclaiming the killed replica's reservations", 15
            )

            async def counted() -> bool:  # once the pass that reclaimed them has ended
                async with session.get(replica.url + "/metrics") as r:
                    return "cycles_sweeper_reclaims_total 5.0" in (await r.text()).splitlines()

            await eventually(counted, "the sweeper's metric counting the 5 reclaims")
        assert await spent(redis_proc.url) == (5 * cost, 0)  # on_expiry: charge, the default
        assert (await quota_counters(ledger, "alpha")).get("q|conc|tenant|alpha", 0) == 0
    finally:
        await ledger.close()


async def test_four_replicas_racing_one_budget_admit_exactly_what_it_fits(
    tmp_path: Path, redis_proc: RedisProc
) -> None:
    """800 calls through 4 processes at once on a budget of exactly 10 calls: on a model that
    prices cache writes at its input price, each reserves its prompt and the 100-token limit
    and, generating the whole limit, is billed exactly that (`cost`); so exactly 10 are
    admitted, the 10th an exact fit whatever the others have settled by then (nothing they
    leave unspent can make room), and nothing is left over for an 11th."""
    body = chat()
    prompt = chat_prompt_tokens(body)
    cost = mini_cost(prompt, 100)
    fits = 10
    policy(tmp_path, f"tenant: {{limit: {usd(fits * cost)}, period: month}}", writes_at_input=True)
    fake = FakeUpstream(FakeSettings(completion_fraction=1.0))
    async with serving(fake.app()) as fake_url, AsyncExitStack() as stack:
        policy_path = tmp_path / "policy.yaml"
        key = fake.settings.api_key
        urls = [
            (
                await stack.enter_async_context(
                    proxy_process(policy_path, redis_proc.url, fake_url + "/v1", key)
                )
            )[0]
            for _ in range(4)
        ]
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def send(url: str) -> int:
            async with session.post(url + "/v1/chat/completions", json=body, headers=ALPHA) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(send(url) for url in urls for _ in range(200)))
    assert (statuses.count(200), statuses.count(402)) == (fits, 800 - fits)
    assert fake.calls == fits
    assert [(b.prompt_tokens, b.completion_tokens) for b in fake.billed] == [(prompt, 100)] * fits
    assert billed_cost(fake) == fits * cost
    assert await spent(redis_proc.url) == (billed_cost(fake), 0)


async def test_a_spilled_call_written_twice_is_charged_once() -> None:
    stores = open_store("memory://", ReservationSettings())
    ledger = stores.ledger
    request = ReserveRequest(
        tenant="alpha",
        reservation_id="spilled-1",
        lines=[BudgetLine("tenant", "alpha", "USD", "month", 10**9)],
        candidates=[Candidate({"USD": 500})],
    )
    spill = Spill()
    # A retry after a partial failure (the commit's answer lost) writes the same call again.
    for _ in range(2):
        spill.add(request, {"USD": 700})
        assert await spill.drain(ledger) == 1
    (row,) = await ledger.balances("alpha")
    assert (row.spent, row.reserved) == (700, 0)


async def test_charges_still_spilled_at_shutdown_are_written_on_the_way_out(
    tmp_path: Path, redis_proc: RedisProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls forwarded unbudgeted while Redis was down leave their charges in the spill; when
    the proxy stops with Redis back, it writes them before it closes the ledger."""
    monkeypatch.setattr(spill, "DRAIN_EVERY", 3600.0)  # only the shutdown can write them
    pol = dataclasses.replace(
        policy(tmp_path, "tenant: {limit: 1000, period: month}"), fail_mode="open"
    )
    async with local_stack(pol, store=redis_proc.url) as stack, aiohttp.ClientSession() as s:

        async def send() -> int:
            async with s.post(stack.url + "/v1/chat/completions", json=chat(), headers=ALPHA) as r:
                return r.status

        assert await send() == 200
        budgeted = billed_cost(stack.fake)
        redis_proc.kill()
        assert [await send() for _ in range(3)] == [200] * 3
        assert len(stack.app[FAIL_OPEN].spill) == 3
        redis_proc.start()
        assert await spent(redis_proc.url) == (budgeted, 0)
    assert await spent(redis_proc.url) == (billed_cost(stack.fake), 0)
    assert billed_cost(stack.fake) == 4 * budgeted


async def test_the_spill_drops_its_oldest_entries_beyond_its_cap() -> None:
    stores = open_store("memory://", ReservationSettings())
    ledger = stores.ledger
    capped = Spill(limit=3)
    for i in range(1, 6):
        request = ReserveRequest(
            tenant="alpha",
            reservation_id=f"spilled-{i}",
            lines=[BudgetLine("tenant", "alpha", "USD", "month", 10**9)],
            candidates=[Candidate({"USD": 500})],
        )
        capped.add(request, {"USD": 100 * i})
    assert (len(capped), capped.dropped) == (3, 2)
    assert await capped.drain(ledger) == 3
    (row,) = await ledger.balances("alpha")
    assert (row.spent, row.reserved) == (300 + 400 + 500, 0)


async def test_a_running_proxy_spills_at_most_100_000_calls(tmp_path: Path) -> None:
    pol = policy(tmp_path, "tenant: {limit: 1000, period: month}")
    async with local_stack(pol, sweep_every=None) as stack:
        assert stack.app[FAIL_OPEN].spill.limit == 100_000


def test_the_local_bucket_admits_the_plan_rate_then_refills() -> None:
    now = [0.0]
    buckets = Buckets(clock=lambda: now[0])
    assert [buckets.take("alpha", 3) for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert buckets.take("alpha", 3) > 0
    assert buckets.take("beta", None) == 0.0
    now[0] += 20.0
    assert buckets.take("alpha", 3) == 0.0


def test_local_buckets_keep_only_the_tenants_used_last() -> None:
    """Issue 14, item 5: a bucket per tenant ever seen while the ledger was down grew without
    end (with `unknown_tenant`, any header value is a tenant). The oldest are dropped; a
    dropped tenant starts again from a full bucket."""
    now = [0.0]
    buckets = Buckets(clock=lambda: now[0], max_tenants=3)
    for tenant in ("a", "b", "c", "d", "e"):
        assert buckets.take(tenant, 1) == 0.0
        assert buckets.take(tenant, 1) > 0
    assert len(buckets) == 3
    assert buckets.take("e", 1) > 0  # kept: still empty
    assert buckets.take("a", 1) == 0.0  # dropped: full again
