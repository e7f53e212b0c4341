"""A reserve the proxy gave up on (issue 15, item 4), on a real redis-server that stalls: an LLM
call's (through the openai SDK) and an action's (the reservation API).

`DEBUG SLEEP` blocks Redis while the proxy's reserve waits in its socket. The ledger's time-out
passes, the client gets 503 and nothing is forwarded; when Redis wakes it still runs the reserve
(the script cannot know its caller left). The proxy has sent a release of that reservation's id
behind it: the reservation ends RELEASED, nothing is charged, and the concurrency slot it took is
free again, so the next call is admitted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest
import redis.asyncio as aioredis
from hooks_support import quota_counters
from support import RedisProc, eventually, mini_cost, policy, settled

from proxy.core.tasks import spawn
from proxy.gateway.context import FAIL_OPEN
from proxy.store.ledger import RedisLedger
from proxy.testing.local import Stack, local_stack

ALPHA = {"X-Cycles-Tenant": "alpha"}
RESERVATIONS = "/v1/cycles/reservations"
STALL_S = 2
"""How long Redis sleeps: well past the ledger's time-out (TIMEOUT_S)."""
TIMEOUT_S = 0.5


@pytest.fixture
async def stalling_redis(tmp_path: Path) -> AsyncIterator[RedisProc]:
    server = RedisProc(tmp_path / "redis", durable=False, args=("--enable-debug-command", "yes"))
    server.start()
    yield server
    server.kill()


async def asleep(port: int) -> bool:
    """Whether Redis is stalled: a PING on a fresh connection gets no answer within 200 ms (an
    awake Redis answers far sooner, even on a loaded machine)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.readline(), 0.2)
        return False
    except TimeoutError:
        return True
    finally:
        writer.close()
        await writer.wait_closed()


async def reservations(stack: Stack) -> dict[str, str]:
    """Reservation id -> state, for every reservation the audit shows admitted."""
    entries = await stack.stores.tenants.audit("alpha")
    ids = [e.fields["reservation"] for e in entries if e.fields.get("decision") == "ALLOW"]
    records = [await stack.ledger.reservation("alpha", rid) for rid in ids]
    return {rid: r.state if r else "MISSING" for rid, r in zip(ids, records, strict=True)}


async def test_a_reserve_that_timed_out_is_released_by_id_never_charged(
    tmp_path: Path, stalling_redis: RedisProc
) -> None:
    pol = policy(
        tmp_path,
        "tenant: {limit: 1000, period: month}",
        plan="quotas: {concurrent_requests: 1}",
    )
    ledger = RedisLedger(stalling_redis.url, pol.reservations, timeout_s=TIMEOUT_S)
    sleeper = aioredis.Redis(port=stalling_redis.port)
    try:
        async with (
            local_stack(pol, store=stalling_redis.url, ledger=ledger) as stack,
            openai.AsyncOpenAI(
                base_url=stack.url + "/v1", api_key="unused", default_headers=ALPHA, max_retries=0
            ) as client,
        ):
            await call(client)
            stall = spawn(sleeper.execute_command("DEBUG", "SLEEP", str(STALL_S)), name="stall")
            await eventually(lambda: asleep(stalling_redis.port), "Redis stalling")
            with pytest.raises(openai.APIStatusError) as refused:
                await call(client)
            assert refused.value.status_code == 503
            assert len(stack.fake.billed) == 1  # the refused call was never forwarded
            await stall

            async def late_reserve_released() -> dict[str, str] | None:
                states = await reservations(stack)
                return states if len(states) == 2 and "OPEN" not in states.values() else None

            states = await eventually(late_reserve_released, "the timed-out reserve released")
            assert sorted(states.values()) == ["COMMITTED", "RELEASED"]
            assert "q|conc|tenant|alpha" not in await quota_counters(ledger, "alpha")
            # The slot is free again (limit 1), and only what was billed is charged.
            await call(client)
            row = await settled(ledger)
            billed = [mini_cost(b.prompt_tokens, b.completion_tokens) for b in stack.fake.billed]
            assert (row.spent, row.reserved, len(billed)) == (sum(billed), 0, 2)
    finally:
        await sleeper.aclose()
        await ledger.close()


async def test_a_reserve_that_never_reached_redis_spills_no_release(
    tmp_path: Path, stalling_redis: RedisProc
) -> None:
    """Redis down (connection refused): the reserve surely did not run, so nothing is queued
    to release (an outage must not fill the spill, whose room is for charges). Only the call that
    meets the connection as it is lost may have had its command written (a reset, not a
    refusal): that one release may be queued, never one per refused call."""
    pol = policy(tmp_path, "tenant: {limit: 1000, period: month}")
    ledger = RedisLedger(stalling_redis.url, pol.reservations, timeout_s=TIMEOUT_S)
    try:
        async with (
            local_stack(pol, store=stalling_redis.url, ledger=ledger) as stack,
            openai.AsyncOpenAI(
                base_url=stack.url + "/v1", api_key="unused", default_headers=ALPHA, max_retries=0
            ) as client,
        ):
            await call(client)
            stalling_redis.kill()
            for _ in range(5):
                with pytest.raises(openai.APIStatusError) as refused:
                    await call(client)
                assert refused.value.status_code == 503
            assert len(stack.app[FAIL_OPEN].spill) <= 1
    finally:
        await ledger.close()


async def test_an_action_reserve_that_timed_out_is_released_by_id(
    tmp_path: Path, stalling_redis: RedisProc
) -> None:
    pol = policy(
        tmp_path,
        "tenant: {limit: 1000, period: month}",
        plan="action_budgets: {tenant: {limit: 500, period: month}}",
    )
    ledger = RedisLedger(stalling_redis.url, pol.reservations, timeout_s=TIMEOUT_S)
    sleeper = aioredis.Redis(port=stalling_redis.port)
    ask = {"unit": "RISK_POINTS", "amount": 30}
    try:
        async with (
            local_stack(pol, store=stalling_redis.url, ledger=ledger) as stack,
            aiohttp.ClientSession(headers=ALPHA) as http,
        ):
            async with http.post(stack.url + RESERVATIONS, json=ask) as first:
                assert first.status == 201
            stall = spawn(sleeper.execute_command("DEBUG", "SLEEP", str(STALL_S)), name="stall")
            await eventually(lambda: asleep(stalling_redis.port), "Redis stalling")
            async with http.post(stack.url + RESERVATIONS, json=ask) as refused:
                assert refused.status == 503
                assert (await refused.json())["error"]["type"] == "service_unavailable"
            await stall

            async def late_reserve_released() -> dict[str, str] | None:
                states = await reservations(stack)
                return (
                    states
                    if len(states) == 2 and list(states.values()).count("OPEN") == 1
                    else None
                )

            states = await eventually(late_reserve_released, "the timed-out reserve released")
            assert sorted(states.values()) == ["OPEN", "RELEASED"]
            points = [r for r in await ledger.balances("alpha") if r.unit == "RISK_POINTS"]
            assert [(r.spent, r.reserved) for r in points] == [(0, 30)]
    finally:
        await sleeper.aclose()
        await ledger.close()


async def call(client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=20
    )
