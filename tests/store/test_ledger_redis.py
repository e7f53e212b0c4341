"""What only the Redis store has: scripts by SHA, round trips, the wire format, instances."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from typing import cast

import pytest
import redis
import redis.asyncio as aioredis
from conftest import CLUSTER, REDIS, free_port
from support import commands_seen, dated, monitor

from proxy.core.errors import LedgerUnavailable
from proxy.core.types import ReservationSettings
from proxy.store.ledger import MemoryLedger, RedisLedger
from proxy.store.ledger.base import (
    ALWAYS,
    BudgetLine,
    Candidate,
    Condition,
    Fit,
    Quotas,
    ReserveRequest,
)
from proxy.store.ledger.calendar import Anchor, period_end_ms, period_id
from proxy.store.ledger.quotas import gcra
from proxy.store.open import open_store
from proxy.store.redis import layout
from proxy.store.tenants.redis import RedisTenants

SETTINGS = ReservationSettings()
DAY = 86_400_000


def lua_source(*parts: str) -> str:
    """The concatenated script parts, as redis.py loads them."""
    lua = resources.files("proxy.store.ledger").joinpath("lua")
    return "".join(lua.joinpath(f"{part}.lua").read_text() for part in parts)


LINES = [
    BudgetLine("tenant", "acme", "USD", "month", 2**52 - 1),
    BudgetLine("run", "r1", "TOKENS", "none", 500),
]


QUOTAS = Quotas(
    concurrent=[("tenant", "acme", 50), ("agent", "bot", 20)],
    runs_per_day=100,
    steps_per_run=100,
    requests_per_minute=1000,
    tokens_per_minute=10**6,
)


def ask(rid: str, usd: int = 100, tokens: int = 10) -> ReserveRequest:
    return ReserveRequest("acme", rid, LINES, [Candidate({"USD": usd, "TOKENS": tokens})])


def degrading(rid: str, shadow: bool = False, quotas: Quotas = QUOTAS) -> ReserveRequest:
    """A call with every feature: a never-as-asked candidate, a fit rule, and every quota."""
    fit = Fit(
        prompt_units=10, prompt_tokens=5, output_per_million=10**6, choices=1, floor=1, ceiling=400
    )
    candidates = [
        Candidate({"USD": 100, "TOKENS": 10}, Condition("never")),
        Candidate({"USD": 410, "TOKENS": 405}, ALWAYS, fit),
    ]
    return ReserveRequest("acme", rid, LINES, candidates, shadow, "r1", quotas)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield raw
    await raw.aclose()


@pytest.fixture
async def ledger(redis_url: str) -> AsyncIterator[RedisLedger]:
    opened = RedisLedger(redis_url, SETTINGS, "web-1")
    yield opened
    await opened.close()


async def test_scripts_reload_transparently_after_script_flush(
    ledger: RedisLedger, client: aioredis.Redis
) -> None:
    shas = [s.sha for s in ledger.scripts.by_name.values()]
    assert (await ledger.reserve(ask("a"))).allowed
    await client.script_flush()
    assert await client.script_exists(*shas) == [False] * len(shas)
    assert (await ledger.reserve(ask("b"))).allowed
    result = await ledger.reserve(ask("c"))
    assert result.reservation is not None
    await client.script_flush()
    assert (await ledger.commit(result.reservation, {"USD": 5, "TOKENS": 1})).first
    assert await client.script_exists(*shas) == [True] * len(shas)


async def test_reserve_and_settle_are_one_command_each(ledger: RedisLedger, redis_url: str) -> None:
    """What the server executes (MONITOR), every quota and a degrade rule included."""
    await ledger.reserve(ask("warm"))  # loads the script, registers the tenant
    async with monitor(redis_url) as commands:
        for request in (ask("a"), degrading("b"), degrading("c", shadow=True)):
            held = (await ledger.reserve(request)).reservation
            assert held is not None
            await ledger.commit(held, {"USD": 1, "TOKENS": 1})
        await ledger.release(held)  # type: ignore[arg-type]  # set by the loop
        assert await commands_seen(commands, 7) == ["evalsha"] * 7


async def test_ledger_unavailable_when_nothing_listens() -> None:
    ledger = RedisLedger(f"redis://127.0.0.1:{free_port()}/0", SETTINGS, "web-1")
    tenants = RedisTenants(ledger.scripts)
    held = await MemoryLedger(SETTINGS).reserve(ask("a"))
    assert held.reservation is not None
    calls = [
        ledger.reserve(ask("a")),
        ledger.commit(held.reservation, {"USD": 1}),
        ledger.release(held.reservation),
        ledger.balances("acme"),
        ledger.reservation("acme", "a"),
        tenants.change_status("acme", "suspended", actor="ops", reason="test"),
        tenants.get_tenant("acme"),
        ledger.heartbeat(),
        ledger.sweep_all(),
    ]
    for call in calls:
        with pytest.raises(LedgerUnavailable, match="unreachable"):
            await call
    await ledger.close()


async def test_record_and_fields_use_the_documented_layout(
    ledger: RedisLedger, client: aioredis.Redis
) -> None:
    before = datetime.now(UTC)
    result = await ledger.reserve(ask("a", usd=2**52 - 1))
    assert result.reservation is not None
    ledger_key, _, resv_key, resv_exp_key, _, _ = layout.tenant_keys("acme")
    month = result.lines[0].period_id
    assert month in dated(before, "m%Y%m01")
    assert await client.hgetall(ledger_key) == {
        f"tenant|acme|USD|{month}|reserved": str(2**52 - 1),
        "run|r1|TOKENS|-|reserved": "10",
    }
    record = cast(str, await client.hget(resv_key, "a"))
    state, created, deadline, owner, outcome, amounts, actual, held, *fields = record.split(" ")
    assert (state, owner, outcome, actual, held) == ("OPEN", "web-1", "0:1:-:-:0:-", "-", "-")
    assert amounts == f"USD={2**52 - 1},TOKENS=10"
    assert fields == [f"tenant|acme|USD|{month}", "run|r1|TOKENS|-"]
    assert int(deadline) - int(created) == SETTINGS.cap_ms
    assert await client.zscore(resv_exp_key, "a") == int(deadline)
    assert await client.smembers(layout.TENANTS) == {"acme"}


async def test_record_of_a_fitted_call_holding_quotas(
    ledger: RedisLedger, client: aioredis.Redis
) -> None:
    one = replace(QUOTAS, concurrent=[("tenant", "acme", 1), ("agent", "bot", 20)])
    before = datetime.now(UTC)
    assert (await ledger.reserve(degrading("a", quotas=one))).allowed
    assert (await ledger.reserve(degrading("b", quotas=one))).quota == "concurrent_requests tenant"
    result = await ledger.reserve(degrading("c", shadow=True, quotas=one))
    assert result.quota == "concurrent_requests tenant"
    record = cast(str, await client.hget(layout.tenant_keys("acme")[2], "c"))
    _, _, _, _, outcome, amounts, actual, held, *fields = record.split(" ")
    # would-be candidate 1, fitted to the run's 95 TOKENS left after "a" (5 of them prompt),
    # refused by concurrency; the call as asked is what shadow reserves
    assert (outcome, amounts, actual) == (
        "1:0:-:90:1000:concurrent_requests/tenant",
        "USD=100,TOKENS=10",
        "-",
    )
    assert held == "q|conc|tenant|acme,q|conc|agent|bot"
    assert len(fields) == 2
    quota_fields = {
        k: v
        for k, v in (await client.hgetall(layout.tenant_keys("acme")[0])).items()
        if k.startswith("q|") and not k.startswith("q|agg|")  # denial counters: the audit's
    }
    day = quota_fields["q|run|r1|day"]
    assert day in dated(before, "d%Y%m%d")
    assert set(quota_fields) == {
        "q|conc|tenant|acme",
        "q|conc|agent|bot",
        f"q|runs|{day}",
        "q|run|r1|day",
        "q|run|r1|steps",
        "q|rpm|tat",
        "q|tpm|tat",
    }
    assert quota_fields["q|run|r1|day"] == day
    assert quota_fields["q|tpm|tat"].isdigit()  # integer µs, never 1.7e+15
    expiring = await client.zrange(layout.tenant_keys("acme")[1], 0, -1)
    assert {"q|runs|" + day, "q|run|r1|day", "q|run|r1|steps", "q|rpm|tat", "q|tpm|tat"} <= set(
        expiring
    )
    assert not any(name.startswith("q|conc|") for name in expiring)


async def test_silent_instance_is_reclaimed_then_forgotten(redis_url: str) -> None:
    gone = RedisLedger(redis_url, SETTINGS, "gone", heartbeat_interval_s=0.01)
    alive = RedisLedger(redis_url, SETTINGS, "alive", heartbeat_interval_s=0.01)
    result = await gone.reserve(ask("a"))
    assert result.reservation is not None
    await gone.heartbeat()
    await asyncio.sleep(0.05)
    await alive.heartbeat()
    assert await alive.sweep_all() == 1
    assert [(r.spent, r.reserved) for r in await alive.balances("acme")] == [(10, 0), (100, 0)]
    assert await alive._client.zrange(layout.INSTANCES, 0, -1) == ["alive"]
    late = await gone.commit(result.reservation, {"USD": 150, "TOKENS": 10})
    assert late.charged == {"USD": 50, "TOKENS": 0}
    for opened in (gone, alive):
        await opened.close()


async def test_live_instance_keeps_its_reservations(redis_url: str) -> None:
    owner = RedisLedger(redis_url, SETTINGS, "owner")
    sweeper = RedisLedger(redis_url, SETTINGS, "sweeper")
    await owner.reserve(ask("a"))
    await owner.heartbeat()
    assert await sweeper.sweep_all() == 0
    assert [r.reserved for r in await sweeper.balances("acme")] == [10, 100]
    for opened in (owner, sweeper):
        await opened.close()


async def test_both_stores_agree_on_period_ids_for_now(ledger: RedisLedger) -> None:
    lines = [BudgetLine("tenant", "acme", "USD", p, 10) for p in ("month", "day", "none")]
    request = ReserveRequest("acme", "a", lines, [Candidate({"USD": 1})])
    in_redis = await ledger.reserve(request)
    in_memory = await MemoryLedger(SETTINGS).reserve(request)
    assert [s.period_id for s in in_redis.lines] == [s.period_id for s in in_memory.lines]


async def test_lua_calendar_matches_python(client: aioredis.Redis) -> None:
    """Run common.lua's period arithmetic at chosen instants (leap days, year ends, 2100), time
    zone offsets and anchors, against proxy.store.ledger.calendar."""
    lua = resources.files("proxy.store.ledger").joinpath("lua", "common.lua").read_text()
    probe = (
        lua
        + """
local out = {}
for i = 5, #ARGV, 4 do
  NOW, OFFSET = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  ANCHOR = { day = tonumber(ARGV[i + 2]), since = tonumber(ARGV[i + 3]) }
  local m, d = period_id('month'), period_id('day')
  out[#out + 1] = m .. ' ' .. d .. ' ' .. fmt(period_end(m)) .. ' ' .. fmt(period_end(d))
end
return out
"""
    )
    instants = [
        DAY,
        951_782_400_000,
        1_709_251_199_999,
        1_798_761_599_999,
        1_798_761_600_000,
        4_107_542_400_000,
        13_574_563_200_000 - 1,
    ]
    instants += random.Random(7).sample(range(DAY, 2**43), 300)
    pick = random.Random(8)
    cases = []
    for instant in instants:
        offset = pick.choice([0, 540, -300, 345, -720, 840])
        anchor = Anchor(pick.choice([1, 15, 28, 29, 30, 31]), pick.choice([0, instant - DAY]))
        cases.append((instant, offset, anchor))
    args = [str(x) for c in cases for x in (c[0], c[1], c[2].day, c[2].since_ms)]
    got = await client.eval(probe, 6, *layout.tenant_keys("probe"), "0:0", "0", "0", "0", *args)
    for (instant, offset, anchor), line in zip(cases, got, strict=True):
        m, d = period_id("month", instant, offset, anchor), period_id("day", instant, offset)
        ends = f"{period_end_ms(m, offset, anchor.day)} {period_end_ms(d, offset)}"
        assert line == f"{m} {d} {ends}", (instant, offset, anchor)


async def test_lua_fit_arithmetic_matches_python(client: aioredis.Redis) -> None:
    """candidates.lua's exact integer steps on doubles, against Python ints, near 2**52."""
    probe = (
        lua_source("common", "candidates")
        + """
local out = {}
for i = 5, #ARGV, 5 do
  local x, d, cap, n, p = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]),
    tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  out[#out + 1] = fmt(per_million_floor(x, d, cap)) .. ' ' .. fmt(per_million_ceil(n, p))
    .. ' ' .. fmt(idiv(x, d))
end
return out
"""
    )
    rng = random.Random(52)
    cases = []
    for _ in range(2000):
        d = rng.choice([rng.randrange(1, 2**43), 2**43 - rng.randrange(1, 1000)])
        x = rng.choice([rng.randrange(0, 2**52), (2**52 // d - rng.randrange(0, 3)) * d - 1])
        n = rng.randrange(0, 2**52)
        p = rng.randrange(0, (2**51 * 10**6) // max(n, 1) + 1)
        cases.append((max(x, 0), d, rng.randrange(0, 2**52), n, p))
    args = [str(v) for case in cases for v in case]
    got = await client.eval(probe, 6, *layout.tenant_keys("probe"), "0:0", "0", "0", "0", *args)
    for (x, d, cap, n, p), reply in zip(cases, got, strict=True):
        expected = f"{min(cap, x * 10**6 // d)} {-(-n * p // 10**6)} {x // d}"
        assert reply == expected, (x, d, cap, n, p)


async def test_lua_rate_arithmetic_matches_python(client: aioredis.Redis) -> None:
    """quotas.lua's GCRA step, at chosen instants and arrival times, against quotas.gcra."""
    probe = (
        lua_source("common", "candidates", "quotas")
        + """
local out = {}
for i = 5, #ARGV, 4 do
  redis.call('HSET', KEYS[1], 'q|rpm|tat', ARGV[i])
  NOW_US = tonumber(ARGV[i + 1])
  local gate = { rates = {} }
  rate(gate, 'requests_per_minute', 'q|rpm|tat', tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]))
  if gate.quota then out[#out + 1] = 'deny ' .. fmt(gate.retry)
  else out[#out + 1] = fmt(gate.rates[1][2]) end
end
return out
"""
    )
    rng = random.Random(60)
    cases = []
    for _ in range(2000):
        now = rng.randrange(1_700_000_000_000_000, 2_000_000_000_000_000)
        limit = rng.choice([rng.randrange(1, 10_000), rng.randrange(1, 2**43)])
        cost = rng.choice([0, 1, rng.randrange(0, limit + 1), rng.randrange(0, 2**52)])
        tat = rng.choice([0, now + rng.randrange(-(10**8), 6 * 10**7)])
        cases.append((tat, now, limit, cost))
    args = [str(v) for case in cases for v in case]
    got = await client.eval(probe, 6, *layout.tenant_keys("probe"), "0:0", "0", "0", "0", *args)
    for (tat, now, limit, cost), reply in zip(cases, got, strict=True):
        new_tat, retry = gcra(tat, now, limit, cost)
        assert reply == (f"deny {retry}" if new_tat is None else str(new_tat)), (tat, now, limit)


async def test_open_store_picks_the_store_by_scheme(redis_url: str) -> None:
    assert isinstance(open_store("memory://", SETTINGS).ledger, MemoryLedger)
    in_redis = open_store(redis_url, SETTINGS, owner="web-1")
    assert isinstance(in_redis.ledger, RedisLedger) and in_redis.ledger.owner == "web-1"
    await in_redis.close()
    in_cluster = open_store("redis+cluster://127.0.0.1:7000", SETTINGS)
    assert isinstance(in_cluster.ledger, RedisLedger)  # nothing connects until the first call
    await in_cluster.close()
    with pytest.raises(ValueError, match="unknown store URL scheme 'mongodb'"):
        open_store("mongodb://localhost", SETTINGS)


def masters(url: str) -> list[redis.Redis]:
    """A client for each master of the store at `url` (one Redis, or every cluster master)."""
    if not url.startswith("redis+cluster://"):
        return [redis.Redis.from_url(url)]
    seed = redis.Redis.from_url(url.replace("redis+cluster://", "redis://"))
    nodes = seed.execute_command("CLUSTER NODES")
    seed.close()
    found = [name.partition("@")[0] for name, node in nodes.items() if "master" in node["flags"]]
    return [redis.Redis(host=a.rpartition(":")[0], port=int(a.rpartition(":")[2])) for a in found]


def command_calls(url: str, command: str) -> int:
    """How many times the store's masters ran `command` since their statistics were reset."""
    total = 0
    for node in masters(url):
        total += node.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)
        node.close()
    return total


@pytest.mark.parametrize("store_url", [REDIS, CLUSTER], indirect=True)
async def test_a_burst_on_a_cold_store_reloads_the_scripts_and_registers_the_tenant_once(
    store_url: str,
) -> None:
    """A flushed or failed-over store lacks every script and this process's tenants: a burst
    of calls meeting it shares one reload and one registration instead of one per call (which
    flooded the store and timed the burst out under load)."""
    for node in masters(store_url):
        node.script_flush()
        node.config_resetstat()
        node.close()
    ledger = RedisLedger(store_url, SETTINGS, "web-1")
    try:
        results = await asyncio.gather(*(ledger.reserve(ask(f"r{i}", tokens=1)) for i in range(60)))
        assert all(r.allowed for r in results)
        rows = {(r.level, r.unit): (r.spent, r.reserved) for r in await ledger.balances("acme")}
        assert (rows[("tenant", "USD")], rows[("run", "TOKENS")]) == ((0, 60 * 100), (0, 60))
    finally:
        await ledger.close()
    one_reload = len(ledger.scripts.by_name) * len(masters(store_url))
    # A cluster node may answer NOSCRIPT to a call sent before the reload reached it after the
    # reload ended: that caller reloads once more. Per call, it would be 60.
    assert one_reload <= command_calls(store_url, "script|load") <= 2 * one_reload
    # One registration of the tenant; on a cluster, one of the due index's shard too (the
    # sweeper's list of `cy:v1:due` keys, cy:v1:due_shards). Per call, it would be 60 each.
    registrations = 2 if store_url.startswith("redis+cluster") else 1
    assert command_calls(store_url, "sadd") == registrations
