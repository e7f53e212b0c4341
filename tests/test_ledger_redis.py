"""What only the Redis store has: scripts by SHA, round trips, the wire format, instances."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from conftest import free_port

from proxy.errors import LedgerUnavailable
from proxy.ledger import MemoryLedger, RedisLedger, keys, open_ledger
from proxy.ledger.base import BudgetLine, ReserveRequest
from proxy.ledger.common import period_end_ms, period_id
from proxy.policy.runtime import ReservationSettings

SETTINGS = ReservationSettings()
LINES = [
    BudgetLine("tenant", "acme", "USD", "month", 2**52 - 1),
    BudgetLine("run", "r1", "TOKENS", "none", 500),
]


def ask(rid: str, usd: int = 100, tokens: int = 10) -> ReserveRequest:
    return ReserveRequest("acme", rid, LINES, [{"USD": usd, "TOKENS": tokens}])


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
    assert (await ledger.reserve(ask("a"))).allowed
    await client.script_flush()
    assert await client.script_exists(*(s.sha for s in ledger._scripts.values())) == [False] * 4
    assert (await ledger.reserve(ask("b"))).allowed
    result = await ledger.reserve(ask("c"))
    assert result.reservation is not None
    await client.script_flush()
    assert (await ledger.commit(result.reservation, {"USD": 5, "TOKENS": 1})).first
    assert await client.script_exists(*(s.sha for s in ledger._scripts.values())) == [True] * 4


async def test_reserve_and_settle_are_one_command_each(
    ledger: RedisLedger, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ledger.reserve(ask("warm"))  # loads the script, registers the tenant
    sent: list[str] = []
    send: Callable[..., Awaitable[Any]] = ledger._client.execute_command

    async def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return await send(*args, **kwargs)

    monkeypatch.setattr(ledger._client, "execute_command", counting)
    for rid in ("a", "b"):
        held = (await ledger.reserve(ask(rid))).reservation
        assert held is not None
        await ledger.commit(held, {"USD": 1, "TOKENS": 1})
    await ledger.release(held)  # type: ignore[arg-type]  # set by the loop
    assert sent == ["EVALSHA"] * 5


async def test_ledger_unavailable_when_nothing_listens() -> None:
    ledger = RedisLedger(f"redis://127.0.0.1:{free_port()}/0", SETTINGS, "web-1")
    held = await MemoryLedger(SETTINGS).reserve(ask("a"))
    assert held.reservation is not None
    calls = [
        ledger.reserve(ask("a")),
        ledger.commit(held.reservation, {"USD": 1}),
        ledger.release(held.reservation),
        ledger.balances("acme"),
        ledger.set_status("acme", "suspended"),
        ledger.sweep("acme"),
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
    result = await ledger.reserve(ask("a", usd=2**52 - 1))
    assert result.reservation is not None
    ledger_key, _, resv_key, resv_exp_key, _ = keys.tenant_keys("acme")
    month = datetime.now(UTC).strftime("m%Y%m")
    assert await client.hgetall(ledger_key) == {
        f"tenant|acme|USD|{month}|reserved": str(2**52 - 1),
        "run|r1|TOKENS|-|reserved": "10",
    }
    record = cast(str, await client.hget(resv_key, "a"))
    state, created, deadline, owner, outcome, amounts, actual, *fields = record.split(" ")
    assert (state, owner, outcome, actual) == ("OPEN", "web-1", "0:1:-", "-")
    assert amounts == f"USD={2**52 - 1},TOKENS=10"
    assert fields == [f"tenant|acme|USD|{month}", "run|r1|TOKENS|-"]
    assert int(deadline) - int(created) == SETTINGS.cap_ms
    assert await client.zscore(resv_exp_key, "a") == int(deadline)
    assert await client.smembers(keys.TENANTS) == {"acme"}


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
    assert await alive._client.zrange(keys.INSTANCES, 0, -1) == ["alive"]
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
    request = ReserveRequest("acme", "a", lines, [{"USD": 1}])
    in_redis = await ledger.reserve(request)
    in_memory = await MemoryLedger(SETTINGS).reserve(request)
    assert [s.period_id for s in in_redis.lines] == [s.period_id for s in in_memory.lines]


async def test_lua_calendar_matches_python(client: aioredis.Redis) -> None:
    """Run common.lua's period arithmetic at chosen instants (leap days, year ends, 2100)."""
    lua = resources.files("proxy.ledger").joinpath("lua", "common.lua").read_text()
    probe = (
        lua
        + """
local out = {}
for i = 4, #ARGV do
  NOW = tonumber(ARGV[i])
  local m, d = period_id('month'), period_id('day')
  out[#out + 1] = m .. ' ' .. d .. ' ' .. fmt(period_end(m)) .. ' ' .. fmt(period_end(d))
end
return out
"""
    )
    instants = [
        0,
        951_782_400_000,
        1_709_251_199_999,
        1_798_761_599_999,
        1_798_761_600_000,
        4_107_542_400_000,
        13_574_563_200_000 - 1,
    ]
    instants += random.Random(7).sample(range(0, 2**43), 300)
    got = await client.eval(probe, 0, "0", "0", "0", *map(str, instants))
    for instant, line in zip(instants, got, strict=True):
        m, d = period_id("month", instant), period_id("day", instant)
        assert line == f"{m} {d} {period_end_ms(m)} {period_end_ms(d)}", instant


async def test_open_ledger_picks_the_store_by_scheme(redis_url: str) -> None:
    assert isinstance(open_ledger("memory://", SETTINGS), MemoryLedger)
    in_redis = open_ledger(redis_url, SETTINGS, "web-1")
    assert isinstance(in_redis, RedisLedger) and in_redis.owner == "web-1"
    await in_redis.close()
    with pytest.raises(ValueError, match="not yet supported"):
        open_ledger("redis+cluster://127.0.0.1:7000", SETTINGS)
    with pytest.raises(ValueError, match="unknown store URL scheme 'mongodb'"):
        open_ledger("mongodb://localhost", SETTINGS)
