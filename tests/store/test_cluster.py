"""Redis Cluster (`redis+cluster://`): what a single Redis does not exercise. Tenants spread over
all three masters, a flush of any one master detected, checks that visit every node, scripts
reloaded where they went missing, key revocations over cluster pub/sub. (The ledger contract
suite and the 200-concurrent-calls test run on the cluster too.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis
from conftest import free_port
from redis.cluster import RedisCluster
from support import (
    admits_exactly,
    chat,
    chat_prompt_tokens,
    eventually,
    following_key_events,
    line,
    mini_cost,
    mini_reserved,
    policy,
    usd,
)

from proxy.core import tasks
from proxy.core.errors import LedgerEpochLost, LedgerUnavailable, SettingsError, StoreUnsafe
from proxy.core.types import ReservationSettings
from proxy.policy import load_policy
from proxy.settings import Settings, validate
from proxy.store.api_keys import Keys, RedisKeyStore, digest
from proxy.store.ledger import RedisLedger
from proxy.store.ledger.base import BudgetLine, Candidate, Quotas, ReserveRequest
from proxy.store.open import open_store
from proxy.store.redis import layout
from proxy.store.redis.clients import check_url
from proxy.store.replays import Record, RedisReplays
from proxy.store.tenants import TenantRecord
from proxy.testing.local import local_stack

SPREAD = ("alpha", "delta", "initech")
"""Tenants whose slots fall on each of the three masters (the test asserts it)."""


def admin(url: str) -> RedisCluster:
    """A synchronous client for poking at the test cluster's nodes."""
    return RedisCluster.from_url(url.replace("redis+cluster://", "redis://"), decode_responses=True)


def node_of(url: str, key: str) -> str:
    client = admin(url)
    try:
        return str(client.get_node_from_key(key).name)
    finally:
        client.close()


def node_client(name: str) -> redis.Redis:
    host, _, port = name.rpartition(":")
    return redis.Redis(host=host, port=int(port), decode_responses=True)


def ask(tenant: str, rid: str, limit: int = 1000, amount: int = 100) -> ReserveRequest:
    lines = [BudgetLine("tenant", tenant, "USD", "month", limit)]
    return ReserveRequest(tenant, rid, lines, [Candidate({"USD": amount})], False, None, Quotas())


@pytest.fixture
async def ledger(redis_cluster_url: str) -> AsyncIterator[RedisLedger]:
    the_ledger = RedisLedger(redis_cluster_url, ReservationSettings(), "me")
    await the_ledger.connect()
    yield the_ledger
    await the_ledger.close()


def test_the_tenants_used_here_land_on_all_three_masters(redis_cluster_url: str) -> None:
    owners = {node_of(redis_cluster_url, layout.tenant_keys(t)[0]) for t in SPREAD}
    assert len(owners) == 3


async def test_every_masters_tenants_get_exactly_their_budget_under_concurrency(
    tmp_path: Path, redis_cluster_url: str
) -> None:
    body = chat()
    cost = mini_cost(chat_prompt_tokens(body), body["max_tokens"])
    reserved = mini_reserved(chat_prompt_tokens(body), body["max_tokens"])
    assert admits_exactly(10, reserved, cost)
    path = tmp_path / "policy.yaml"
    policy(tmp_path, f"tenant: {{limit: {usd(10 * reserved)}, period: month}}")
    path.write_text(path.read_text() + "  delta: {plan: test}\n  initech: {plan: test}\n")

    async def post(session: aiohttp.ClientSession, url: str, tenant: str) -> int:
        headers = {"X-Cycles-Tenant": tenant}
        async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
            await r.read()
            return r.status

    async with (
        local_stack(load_policy(path), store=redis_cluster_url) as stack,
        aiohttp.ClientSession() as session,
    ):
        calls = [(t, post(session, stack.url, t)) for t in SPREAD for _ in range(70)]
        statuses = await asyncio.gather(*(call for _, call in calls))
        for tenant in SPREAD:
            mine = [s for (t, _), s in zip(calls, statuses, strict=True) if t == tenant]
            assert (mine.count(200), mine.count(402)) == (10, 60), tenant
            row = await line(stack.ledger, tenant, "tenant")
            assert (row.spent, row.reserved) == (10 * cost, 0)
        assert stack.fake.calls == 30
        billed = [mini_cost(b.prompt_tokens, b.completion_tokens) for b in stack.fake.billed]
        assert billed == [cost] * 30


async def test_sweeper_and_tenant_listing_reach_every_master(redis_cluster_url: str) -> None:
    stores = open_store(redis_cluster_url, ReservationSettings(cap_ms=0), owner="me")
    ledger = stores.ledger
    try:
        for tenant in SPREAD:
            await stores.tenants.create_tenant(TenantRecord(tenant, "pro"), actor="test")
            assert (await ledger.reserve(ask(tenant, "r1"))).allowed
        await ledger.heartbeat()
        assert await ledger.sweep_all() == 3
        for tenant in SPREAD:
            rows = await ledger.balances(tenant)
            assert [(r.spent, r.reserved) for r in rows] == [(100, 0)]
        listed = await stores.tenants.list_tenants(after=None, limit=10)
        assert [r.id for r in listed] == sorted(SPREAD)
    finally:
        await stores.close()


async def test_each_master_holds_an_epoch_key_and_a_second_process_shares_them(
    redis_cluster_url: str, ledger: RedisLedger
) -> None:
    recorded = ledger._epoch.recorded
    assert layout.EPOCH in recorded
    assert len({node_of(redis_cluster_url, name) for name in recorded}) == 3
    other = RedisLedger(redis_cluster_url, ReservationSettings(), "other")
    try:
        await other.connect()
        await other.heartbeat()
        await ledger.heartbeat()
        assert other._epoch.recorded == recorded
        assert not ledger._epoch.lost and not other._epoch.lost
    finally:
        await other.close()


async def test_flushing_one_master_that_holds_no_first_epoch_key_is_detected(
    redis_cluster_url: str, ledger: RedisLedger, caplog: pytest.LogCaptureFixture
) -> None:
    lost: list[tuple[str | None, str | None]] = []
    ledger.on_epoch_lost(lambda expected, found: lost.append((expected, found)))
    assert (await ledger.reserve(ask("alpha", "r1"))).allowed
    first = node_of(redis_cluster_url, layout.EPOCH)
    victim = next(
        node_of(redis_cluster_url, name)
        for name in ledger._epoch.recorded
        if node_of(redis_cluster_url, name) != first
    )
    client = node_client(victim)
    client.flushall()
    client.close()
    await ledger.heartbeat()
    assert ledger._epoch.lost
    assert len(lost) == 1 and lost[0][0] is not None and lost[0][1] is None
    with pytest.raises(LedgerEpochLost):
        await ledger.reserve(ask("alpha", "r2"))
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and f"on the master {victim}" in critical[0]


@pytest.fixture
def evicting_node(redis_cluster_url: str) -> Iterator[str]:
    """A master that does not hold `cy:v1:epoch`, set to allkeys-lru, restored afterwards."""
    first = node_of(redis_cluster_url, layout.EPOCH)
    client = admin(redis_cluster_url)
    name = next(n.name for n in client.get_primaries() if n.name != first)
    client.close()
    node = node_client(name)
    node.config_set("maxmemory-policy", "allkeys-lru")
    try:
        yield name
    finally:
        node.config_set("maxmemory-policy", "noeviction")
        node.close()


async def test_an_evicting_node_is_named_at_connect(
    redis_cluster_url: str, evicting_node: str, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = RedisLedger(redis_cluster_url, ReservationSettings())
    try:
        await ledger.connect()
        with pytest.raises(StoreUnsafe, match=f"node {evicting_node}'s .*allkeys-lru"):
            await ledger.connect(require_noeviction=True)
    finally:
        await ledger.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and evicting_node in warnings[0]


async def test_scripts_flushed_on_one_master_are_loaded_again(
    redis_cluster_url: str, ledger: RedisLedger
) -> None:
    assert (await ledger.reserve(ask("alpha", "r1"))).allowed
    client = node_client(node_of(redis_cluster_url, layout.tenant_keys("alpha")[0]))
    client.script_flush()
    client.close()
    assert (await ledger.reserve(ask("alpha", "r2"))).allowed
    assert [r.reserved for r in await ledger.balances("alpha")] == [200]


async def test_revocation_reaches_another_process_over_cluster_pubsub(
    redis_cluster_url: str,
) -> None:
    here, there = RedisKeyStore(redis_cluster_url), RedisKeyStore(redis_cluster_url)
    cache = Keys(there)
    watcher = tasks.spawn(cache.watch(), name="test key events")
    try:
        plain, record = await here.create("alpha")
        await following_key_events(cache, redis_cluster_url)
        assert await cache.lookup(digest(plain)) == record  # warm
        await here.revoke("alpha", record.key_id)
        await eventually(lambda: len(cache) == 0, "the revoked key leaving the other cache")
        found = await cache.lookup(digest(plain))
        assert found is not None and found.state == "revoked"
    finally:
        await tasks.stop(watcher)
        await here.close()
        await there.close()


async def test_client_retries_are_recorded_on_the_tenants_master(redis_cluster_url: str) -> None:
    store = RedisReplays(redis_cluster_url)
    try:
        for tenant in SPREAD:
            assert await store.claim(tenant, "d" * 64, Record("h")) is None
            await store.keep(tenant, "d" * 64, Record("h", 200, (), b"answer"))
            assert await store.claim(tenant, "d" * 64, Record("h")) == Record(
                "h", 200, (), b"answer"
            )
    finally:
        await store.close()


async def test_seed_list_finds_the_cluster_past_a_dead_seed(redis_cluster_url: str) -> None:
    url = redis_cluster_url.replace("://", f"://127.0.0.1:{free_port()},")
    stores = open_store(url, ReservationSettings(), owner="me")
    ledger = stores.ledger
    try:
        assert (await ledger.reserve(ask("delta", "r1"))).allowed
    finally:
        await stores.close()


async def test_an_unreachable_cluster_is_unavailable_not_an_error() -> None:
    stores = open_store(f"redis+cluster://127.0.0.1:{free_port()}", ReservationSettings())
    ledger = stores.ledger
    try:
        with pytest.raises(LedgerUnavailable):
            await ledger.reserve(ask("alpha", "r1"))
    finally:
        await stores.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://10.0.0.1:6379/2", "only database 0"),
        ("rediss+cluster://10.0.0.1", "host:port"),
        ("redis+cluster://10.0.0.1:6379,10.0.0.2", "host:port"),
        ("redis+sentinel://10.0.0.1:26379", "unknown store URL scheme"),
    ],
)
def test_store_urls_that_cannot_work_are_refused_at_start(
    tmp_path: Path, url: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        check_url(url)
    settings = Settings(policy=str(tmp_path), store=url)
    with pytest.raises(SettingsError, match=f"--store / CYCLES_STORE: .*{problem}"):
        validate(settings, policy(tmp_path, "tenant: {limit: 1, period: month}"))


def test_a_password_in_a_refused_url_is_not_repeated() -> None:
    with pytest.raises(ValueError) as refused:
        check_url("redis+cluster://user:s3cret@10.0.0.1:6379/1")
    assert "s3cret" not in str(refused.value)
