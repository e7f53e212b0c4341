"""The reservation lifecycle at scale (issue 15, items 1-3): sums that would leave the safe
range are refused whole; one tenant's failing sweep never stops the pass; a dead replica's
reclaim is bounded work, resumed pass after pass; a pass visits only tenants with something due;
the heartbeat never waits for a sweep. On every store (conftest.ALL_STORES), but where a test
reads what only one Redis shows."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
import redis
from conftest import CLUSTER, EVERY_STORE, MEMORY, REDIS
from hooks_support import quota_counters, set_clock_offset, sweep_tenant
from support import RedisProc, eventually, policy
from sweep_support import (
    SAFE,
    WHALE,
    WHALE_LINE,
    Probe,
    Store,
    ask,
    fill,
    generation_fields,
    instances,
    redis_ms,
    reserved,
    script_calls,
    set_sum,
    silent_instance,
    sums,
)

from proxy.core.errors import AmountOutOfRange
from proxy.core.types import ReservationSettings
from proxy.store.ledger import MemoryLedger, RedisLedger
from proxy.store.ledger.base import BudgetLine, Candidate, Quotas, ReserveRequest
from proxy.store.open import open_store
from proxy.store.redis import layout
from proxy.store.redis.clients import open_client
from proxy.store.tenants import TenantRecord
from proxy.testing.local import local_stack

BIG = 2**52 - 1
"""The largest single amount a store accepts."""


# --- item 1: every sum stays in the safe range, refused whole before anything is written ------


@EVERY_STORE
async def test_a_charge_past_the_safe_range_is_refused_and_writes_nothing(store_url: str) -> None:
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    try:
        held = await reserved(ledger, ask("acme", "r1", 100))
        await set_sum(ledger, store_url, "acme", f"{held.fields[0]}|spent", SAFE - 50)
        with pytest.raises(AmountOutOfRange, match="spent"):
            await ledger.commit(held, {"USD": 100})
        assert await sums(ledger, "acme") == (SAFE - 50, 100)
        record = await ledger.reservation("acme", "r1")
        assert record is not None and record.state == "OPEN"
        settled = await ledger.commit(held, {"USD": 50})  # up to SAFE itself is fine
        assert (settled.state, settled.charged) == ("COMMITTED", {"USD": 50})
        assert await sums(ledger, "acme") == (SAFE, 0)
    finally:
        await stores.close()


@EVERY_STORE
async def test_a_reservation_past_the_safe_range_is_refused_and_counts_nothing(
    store_url: str,
) -> None:
    """Shadow mode reserves whatever a call asks, so only the safe range bounds `reserved`."""
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    quotas = Quotas(concurrent=[("tenant", "acme", 10)])
    try:
        for rid in ("r1", "r2"):
            await reserved(ledger, ask("acme", rid, BIG, shadow=True, quotas=quotas))
        with pytest.raises(AmountOutOfRange, match="reserved"):
            await ledger.reserve(ask("acme", "r3", BIG, shadow=True, quotas=quotas))
        assert await sums(ledger, "acme") == (0, 2 * BIG)
        assert await ledger.reservation("acme", "r3") is None
        assert (await quota_counters(ledger, "acme"))["q|conc|tenant|acme"] == 2
    finally:
        await stores.close()


@EVERY_STORE
async def test_a_credit_past_the_safe_range_is_refused(store_url: str) -> None:
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    try:
        await stores.tenants.create_tenant(TenantRecord("acme", "pro"), actor="test")
        credit = dict(level="tenant", value="acme", unit="USD", period="month", amount=BIG)
        for _ in range(2):
            await stores.tenants.adjust("acme", **credit, actor="ops", reason="top-up")  # type: ignore[arg-type]
        with pytest.raises(AmountOutOfRange, match="credit"):
            await stores.tenants.adjust("acme", **credit, actor="ops", reason="top-up")  # type: ignore[arg-type]
        (row,) = await ledger.balances("acme")
        assert row.credit == 2 * BIG
    finally:
        await stores.close()


@EVERY_STORE
async def test_a_late_commit_past_the_safe_range_is_refused_and_writes_nothing(
    store_url: str,
) -> None:
    """A commit after an expiry charge adds actual - estimate to each line (late_charge, with
    its reset generations): every line is checked before the first is written, so one line at
    the edge refuses the whole commit, the line before it keeps its sum and the record stays
    EXPIRED_CHARGED; the same commit within the range then goes through."""
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    workflow = BudgetLine("workflow", "w1", "USD", "month", 10**9)
    request = ask("acme", "r1", 100, ttl_ms=0)
    request = dataclasses.replace(request, lines=[*request.lines, workflow])
    try:
        held = await reserved(ledger, request)
        assert await sweep_tenant(ledger, "acme") == 1  # charged its estimate on both lines
        await set_sum(ledger, store_url, "acme", f"{held.fields[1]}|spent", SAFE - 50)
        with pytest.raises(AmountOutOfRange, match="workflow"):
            await ledger.commit(held, {"USD": 200})  # + 100 on each line
        spent = {row.level: row.spent for row in await ledger.balances("acme")}
        assert spent == {"tenant": 100, "workflow": SAFE - 50}
        record = await ledger.reservation("acme", "r1")
        assert record is not None and record.state == "EXPIRED_CHARGED"
        settled = await ledger.commit(held, {"USD": 150})  # + 50: up to SAFE itself is fine
        assert (settled.state, settled.charged) == ("COMMITTED", {"USD": 50})
        spent = {row.level: row.spent for row in await ledger.balances("acme")}
        assert spent == {"tenant": 150, "workflow": SAFE}
    finally:
        await stores.close()


@EVERY_STORE
async def test_one_tenants_failing_sweep_is_skipped_counted_and_the_pass_goes_on(
    store_url: str,
) -> None:
    """Tenant b's spent is where past commits could once take it (2**63 - 5): charging its
    expired reservation would overflow. Tenant bb's sweep fails outright: its `reserved` holds
    no integer (a store damaged by hand). b and bb are left exactly as they were, a and c
    (either side of them in every order) are swept, both errors are counted, and the dead
    replica is still forgotten."""
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    tenants = ("a", "b", "bb", "c")
    try:
        held = {t: await reserved(ledger, ask(t, "r1", 100, ttl_ms=0)) for t in tenants}
        await set_sum(ledger, store_url, "b", f"{held['b'].fields[0]}|spent", 2**63 - 5)
        damaged = f"{held['bb'].fields[0]}|reserved"
        await set_sum(ledger, store_url, "bb", damaged, "1e3")  # type: ignore[arg-type]
        await silent_instance(ledger, store_url, "ghost")
        assert await ledger.sweep_all() == 2
        assert [await sums(ledger, t) for t in ("a", "b", "c")] == [
            (100, 0),
            (2**63 - 5, 100),
            (100, 0),
        ]
        for tenant in ("b", "bb"):
            record = await ledger.reservation(tenant, "r1")
            assert record is not None and record.state == "OPEN"
        assert ledger.sweep_errors == 2
        assert "ghost" not in await instances(ledger, store_url)
        # Still due, b tried again a while later (sweeping.STUCK_RETRY_MS): once their sums are
        # back in range, the pass after that charges both.
        await set_sum(ledger, store_url, "b", f"{held['b'].fields[0]}|spent", 0)
        await set_sum(ledger, store_url, "bb", damaged, 100)
        await set_clock_offset(ledger, "b", ledger.stuck_retry_ms + 1000)
        assert await ledger.sweep_all() == 2
        assert [await sums(ledger, t) for t in ("b", "bb")] == [(100, 0), (100, 0)]
    finally:
        await stores.close()


# --- item 2: a dead replica's reclaim is bounded work, resumed pass after pass ----------------


@pytest.mark.parametrize("store_url", [REDIS, CLUSTER], indirect=True)
async def test_a_dead_replicas_reclaim_is_bounded_per_pass_and_resumed_until_done(
    store_url: str,
) -> None:
    """700 open reservations of a replica that died, among 500 tombstones: a pass whose time
    budget is spent stops after one bounded step, the next picks up where it stopped, each
    reservation is charged exactly once, and the replica is forgotten only when all are."""
    dead = RedisLedger(store_url, ReservationSettings(), "ghost")
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    assert isinstance(ledger, RedisLedger)
    try:
        for i in range(500):
            await dead.commit(await reserved(dead, ask("whale", f"done{i}", 1)), {"USD": 1})
        for i in range(700):
            await reserved(dead, ask("whale", f"open{i}", 100))
        await silent_instance(ledger, store_url, "ghost")
        ledger.sweep_budget_s = 0.0
        per_pass = [await ledger.sweep_all()]
        assert 0 < per_pass[0] < 700
        assert "ghost" in await instances(ledger, store_url)
        while "ghost" in await instances(ledger, store_url):
            per_pass.append(await ledger.sweep_all())
            assert len(per_pass) < 100, per_pass
        assert sum(per_pass) == 700
        assert len(per_pass) >= 3, per_pass  # 1200 records at a few hundred a step
        assert await sums(ledger, "whale") == (500 + 700 * 100, 0)
    finally:
        await dead.close()
        await stores.close()


# --- item 3: a pass visits only tenants with something due; the heartbeat never waits ---------


class Counted(MemoryLedger):
    """memory:// with the tenants each sweep visits written down."""

    visits: list[str]

    async def _sweep_tenant(
        self, tenant: str, dead: set[str]
    ) -> tuple[int, AmountOutOfRange | None]:
        self.visits.append(tenant)
        return await super()._sweep_tenant(tenant, dead)


# Not on a cluster: script_calls reads the commandstats of one Redis.
@pytest.mark.parametrize("store_url", [MEMORY, REDIS], indirect=True)
async def test_a_pass_visits_only_the_tenants_with_something_due(store_url: str) -> None:
    """300 idle tenants (settled calls: tombstones and period entries that expire later) cost
    a pass nothing once indexed (memory:// looks at a tenant once after each operation on it);
    the 3 with an expired reservation are each swept once."""
    ledger: Store
    if store_url == "memory://":
        ledger = Counted(ReservationSettings(), "me")
        ledger.visits = []
    else:
        ledger = RedisLedger(store_url, ReservationSettings(), "me")
        ledger.walk_per_pass = 0  # the registry walk visits a fixed number of any tenants
    try:
        for i in range(300):
            tenant = f"idle{i}"
            await ledger.commit(await reserved(ledger, ask(tenant, "r1", 5)), {"USD": 5})
        await ledger.sweep_all()
        for tenant in ("due1", "due2", "due3"):
            await reserved(ledger, ask(tenant, "r1", 100, ttl_ms=0))
        calls = 0 if isinstance(ledger, MemoryLedger) else await script_calls(store_url)
        if isinstance(ledger, Counted):
            ledger.visits.clear()
        assert await ledger.sweep_all() == 3
        if isinstance(ledger, Counted):
            assert sorted(ledger.visits) == ["due1", "due2", "due3"]
        else:
            assert await script_calls(store_url) - calls == 3
        assert await sums(ledger, "due2") == (100, 0)
        assert await sums(ledger, "idle7") == (5, 0)
    finally:
        await ledger.close()


@EVERY_STORE
async def test_a_resets_generation_entries_are_swept_when_they_expire(store_url: str) -> None:
    """RESET_SPENT records its generation on each line it reset in an entry that lives a
    tombstone's lifetime (`q|gen|reset|…`, for late commits): the reset puts the tenant in the
    due index, so a pass drops those entries when they expire even when nothing else of the
    tenant is due (a lifetime line, its tombstone gone)."""
    stores = open_store(store_url, ReservationSettings(tombstone_ms=200))
    ledger = stores.ledger
    if isinstance(ledger, RedisLedger):
        ledger.walk_per_pass = 0  # only the due index leads a pass to the tenant
    lifetime = BudgetLine("tenant", "acme", "USD", "none", 10**9)
    try:
        await stores.tenants.create_tenant(TenantRecord("acme", "pro"), actor="test")
        request = ReserveRequest("acme", "r1", [lifetime], [Candidate({"USD": 5})])
        await ledger.commit(await reserved(ledger, request), {"USD": 5})

        async def forgotten() -> bool:
            await ledger.sweep_all()
            return await ledger.reservation("acme", "r1") is None

        await eventually(forgotten, "the commit's tombstone dropped (nothing of acme left due)")
        await stores.tenants.reset(
            "acme", level=None, value=None, actor="ops", reason="new quarter"
        )
        assert await generation_fields(ledger, store_url, "acme")

        async def dropped() -> bool:
            await ledger.sweep_all()
            return not await generation_fields(ledger, store_url, "acme")

        await eventually(dropped, "the reset's generation entries dropped once they expired")
        assert await sums(ledger, "acme") == (0, 0)
    finally:
        await stores.close()


class StuckSweep(RedisLedger):
    """A sweep that never ends (as one over a huge backlog seems to the heartbeat)."""

    stuck: asyncio.Event

    async def sweep_all(self) -> int:
        self.stuck.set()
        await asyncio.Event().wait()
        return 0


async def test_the_heartbeat_goes_on_while_a_sweep_runs(tmp_path: Path, redis_url: str) -> None:
    """A replica in the middle of a sweep longer than 3 heartbeat intervals (what makes other
    replicas presume it dead) keeps heartbeating."""
    interval = 0.1
    ledger = StuckSweep(redis_url, ReservationSettings(), "busy", heartbeat_interval_s=interval)
    ledger.stuck = asyncio.Event()
    client = open_client(redis_url, decode_responses=True)
    pol = policy(tmp_path, "tenant: {limit: 1000, period: month}")
    try:
        async with local_stack(pol, store=redis_url, ledger=ledger, sweep_every=interval):
            await eventually(ledger.stuck.is_set, "the sweeper starting a pass")
            seconds, micros = await client.time()
            since = int(seconds) * 1000 + int(micros) // 1000

            async def beating() -> bool:
                last = await client.zscore(layout.INSTANCES, "busy")
                return last is not None and last > since + 3 * interval * 1000

            await eventually(beating, "a heartbeat 3 intervals into a sweep that has not ended")
    finally:
        await client.aclose()
        await ledger.close()


# --- acceptance 3: at scale, a pass never blocks Redis and the replica stays alive -----------

SIZES = [
    pytest.param(2_000, 20_000, 200, id="short"),
    pytest.param(
        200_000, 1_000_000, 1_000, id="soak", marks=[pytest.mark.soak, pytest.mark.timeout(3600)]
    ),
]
"""Idle tenants, the whale's tombstones, and its open calls owned by a replica that died."""
BLOCKING_US = 50_000


@pytest.mark.parametrize(("tenants", "tombstones", "open_calls"), SIZES)
async def test_a_sweep_never_blocks_redis_and_the_replica_stays_alive(
    tmp_path: Path, tenants: int, tombstones: int, open_calls: int
) -> None:
    """A running replica reclaims a dead one's calls from a tenant with a vast record backlog,
    drops its expired tombstones, among many idle tenants: no command runs 50 ms or more
    (SLOWLOG), and its heartbeat is never 3 intervals old (a probe on its own connection)."""
    server = RedisProc(tmp_path / "redis", durable=False)
    server.start()
    admin = redis.Redis(port=server.port, decode_responses=True)
    try:
        await asyncio.to_thread(fill, server.port, tenants, tombstones, open_calls, "ghost")
        admin.config_set("slowlog-log-slower-than", BLOCKING_US)
        admin.slowlog_reset()
        interval = 0.5
        ledger = RedisLedger(
            server.url, ReservationSettings(), "live", heartbeat_interval_s=interval
        )
        pol = policy(tmp_path, "tenant: {limit: 1000, period: month}")
        probe = Probe(server.port, "live")
        probe.start()
        try:
            async with local_stack(pol, store=server.url, ledger=ledger, sweep_every=interval / 2):

                def done() -> bool:
                    now = redis_ms(admin)
                    expired = admin.zcount(layout.tenant_keys(WHALE)[3], "-inf", now)
                    reserved = admin.hget(layout.tenant_keys(WHALE)[0], f"{WHALE_LINE}|reserved")
                    gone = admin.zscore(layout.INSTANCES, "ghost") is None
                    return gone and expired == 0 and reserved == "0"

                within = 60 + tombstones / 500  # a loaded machine sweeps ~10k records a second
                await eventually(done, "the dead replica's calls reclaimed", within=within)
        finally:
            probe.stop()
            await ledger.close()
        spent = admin.hget(layout.tenant_keys(WHALE)[0], f"{WHALE_LINE}|spent")
        assert spent == str(100 * open_calls)
        assert probe.errors == []
        slow = [(e["duration"], e["command"][:60]) for e in admin.slowlog_get(128)]
        assert slow == [], f"commands that held Redis {BLOCKING_US} µs or more: {slow}"
        assert 0 < probe.oldest_beat_ms < 3 * interval * 1000, probe.oldest_beat_ms
        pings = sorted(probe.pings)
        print(
            f"{len(pings)} PINGs while sweeping: median {pings[len(pings) // 2] * 1000:.2f} ms, "
            f"max {pings[-1] * 1000:.2f} ms; oldest heartbeat {probe.oldest_beat_ms} ms"
        )
    finally:
        admin.close()
        server.kill()
