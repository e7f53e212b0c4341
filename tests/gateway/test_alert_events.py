"""Alerts beyond thresholds: the first budget denial of a period, a lost ledger epoch (and
`on_store_lost`), spilled commits that cross a threshold, and `cycles_alerts_total`."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from alerts_support import (  # noqa: F401  (fast_retries: an autouse fixture)
    LIMIT,
    SCOPE,
    alerting_policy,
    fast_retries,
    quiet,
    receiver,
    verify,
)
from hooks_support import quota_counters
from support import chat, eventually, flushall, send

from proxy.core.types import ReservationSettings
from proxy.gateway.context import FAIL_OPEN
from proxy.gateway.spill import Spill
from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.store.ledger.base import BudgetLine, Candidate, ReserveRequest, SettleResult
from proxy.store.ledger.base import Reservation as Held
from proxy.store.ledger.redis import RedisLedger
from proxy.store.open import open_store
from proxy.store.redis.layout import INSTANCES
from proxy.testing.local import Stack, local_stack


async def alerts_metric(stack: Stack, kind: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(stack.url + "/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith(f'cycles_alerts_total{{type="{kind}"}}'):
            return float(line.split()[-1])
    return 0.0


# --- first DENY of the period ---------------------------------------------------------------


async def test_the_store_reports_only_the_first_budget_denial_of_a_period(store_url: str) -> None:
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    line = BudgetLine("tenant", "acme", "USD", "month", 100)
    try:
        firsts = []
        for i in range(5):
            request = ReserveRequest("acme", f"r{i}", [line], [Candidate({"USD": 500})])
            result = await ledger.reserve(request)
            assert not result.allowed and result.denied_by == 0
            firsts.append(result.first_deny)
        prefix = result.lines[0].field
        assert firsts == [prefix, None, None, None, None]
        allowed = await ledger.reserve(
            ReserveRequest("acme", "ok", [line], [Candidate({"USD": 1})])
        )
        assert allowed.allowed and allowed.first_deny is None
        shadow = ReserveRequest("acme", "s", [line], [Candidate({"USD": 500})], shadow=True)
        assert (await ledger.reserve(shadow)).first_deny is None
        assert f"q|alert|{prefix}|deny" in await quota_counters(ledger, "acme")
    finally:
        await stores.close()


async def test_five_denied_calls_fire_one_first_deny_event(tmp_path: Path, store_url: str) -> None:
    async with receiver() as (hook, url):
        stack_policy = alerting_policy(tmp_path, url)
        async with (
            local_stack(stack_policy, store=store_url, sweep_every=None) as stack,
            aiohttp.ClientSession() as session,
        ):
            for _ in range(5):
                body = chat("hi", LIMIT * 2)
                async with session.post(
                    f"{stack.url}/v1/chat/completions", json=body, headers=SCOPE
                ) as answer:
                    assert answer.status == 402, await answer.text()
            await quiet()
            assert await alerts_metric(stack, "budget.first_deny") == 1
    assert [e["type"] for e in hook.accepted] == ["budget.first_deny"]
    event = hook.accepted[0]
    assert (event["tenant"], event["level"], event["value"]) == ("alpha", "tenant", "alpha")
    assert (event["unit"], event["limit"]) == ("TOKENS", LIMIT)
    assert event["period"].startswith("m") and event["id"].endswith("/first_deny")
    assert all(verify(headers, body) for headers, body in hook.received)


# --- spilled commits and the threshold metric -------------------------------------------------


async def test_a_spilled_commit_that_crosses_a_threshold_is_announced() -> None:
    stores = open_store("memory://", ReservationSettings())
    ledger = stores.ledger
    line = BudgetLine("tenant", "acme", "USD", "month", 1000)
    request = ReserveRequest("acme", "spilled", [line], [Candidate({"USD": 10})], alerts=(8000,))
    spill = Spill()
    spill.add(request, {"USD": 900})
    seen: list[tuple[Held, SettleResult]] = []
    assert await spill.drain(ledger, lambda r, s: seen.append((r, s))) == 1
    [(reservation, result)] = seen
    assert reservation.id == "spilled"
    assert [(c.basis_points, c.spent) for c in result.crossed] == [(8000, 900)]


async def test_threshold_alerts_are_counted(tmp_path: Path) -> None:
    async with receiver() as (hook, url):
        stack_policy = alerting_policy(tmp_path, url)
        async with (
            local_stack(stack_policy, sweep_every=None) as stack,
            aiohttp.ClientSession() as session,
        ):
            async with session.post(
                f"{stack.url}/v1/chat/completions", json=chat("hi", 850), headers=SCOPE
            ) as answer:
                assert answer.status == 200
            await quiet()
            assert await alerts_metric(stack, "budget.threshold") == 2
    assert sorted(e["threshold"] for e in hook.accepted) == ["50%", "80%"]


# --- a lost ledger epoch ----------------------------------------------------------------------


def lost_policy(tmp_path: Path, url: str, on_store_lost: str) -> Policy:
    alerting_policy(tmp_path, url)
    path = tmp_path / "policy.yaml"
    path.write_text(path.read_text() + f"on_store_lost: {on_store_lost}\n")
    return load_policy(path)


async def heartbeats(stack: Stack, redis_url: str, count: int) -> None:
    """Wait until this proxy has written `count` more heartbeats (each also checks the epoch)."""
    assert isinstance(stack.ledger, RedisLedger)
    owner = stack.ledger.owner
    client = aioredis.Redis.from_url(redis_url)
    try:
        for n in range(count):
            before = await client.zscore(INSTANCES, owner)

            async def beat(before: float | None = before) -> bool:
                now = await client.zscore(INSTANCES, owner)
                return now is not None and (before is None or now > before)

            await eventually(beat, f"heartbeat {n + 1} of {count} after the epoch loss")
    finally:
        await client.aclose()


@pytest.mark.parametrize("on_store_lost", ["closed", "shadow"])
async def test_a_lost_epoch_alerts_once_and_on_store_lost_decides(
    tmp_path: Path, redis_url: str, on_store_lost: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with receiver() as (hook, url):
        the_policy = lost_policy(tmp_path, url, on_store_lost)
        assert the_policy.on_store_lost == on_store_lost
        async with (
            local_stack(the_policy, store=redis_url, sweep_every=0.05) as stack,
            aiohttp.ClientSession() as session,
        ):
            assert (await send(session, stack.url))[0] == 200
            await quiet()
            flushall(redis_url)
            await eventually(lambda: "LEDGER EPOCH LOST" in caplog.text, "the epoch loss logged")
            await heartbeats(stack, redis_url, 3)  # each sees the loss: still one alert
            calls = stack.fake.calls
            for _ in range(3):
                status, body = await send(session, stack.url)
                if on_store_lost == "closed":
                    assert status == 503 and body["error"]["code"] == "ledger_epoch_lost"
                else:
                    assert status == 200, body
            await quiet()
            forwarded = stack.fake.calls - calls
            assert forwarded == (0 if on_store_lost == "closed" else 3)
            assert await stack.ledger.balances("alpha") == [], "nothing written to the new store"
            spill = stack.app[FAIL_OPEN].spill
            assert len(spill) == 0 and spill.lost
            assert spill.dropped == (0 if on_store_lost == "closed" else 3)
            assert await alerts_metric(stack, "ledger.epoch_lost") == 1
    events = [e for e in hook.accepted if e["type"] == "ledger.epoch_lost"]
    assert len(events) == 1
    assert events[0]["found"] != events[0]["expected"]
    assert events[0]["on_store_lost"] == on_store_lost
    assert all(verify(headers, body) for headers, body in hook.received)
    dropped = [r for r in caplog.records if "epoch is lost; not written" in r.getMessage()]
    assert all(r.levelno == logging.ERROR for r in dropped)


def test_on_store_lost_is_validated(tmp_path: Path) -> None:
    from proxy.core.errors import PolicyError

    with pytest.raises(PolicyError) as caught:
        lost_policy(tmp_path, "https://x/y", "open")
    assert "on_store_lost" in str(caught.value)
