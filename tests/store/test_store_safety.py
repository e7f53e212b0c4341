"""The store's own safety: a flushed Redis fails closed instead of handing out fresh budgets, and
an eviction policy that could drop ledger keys is reported (or refused)."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
import redis
from redis import exceptions as rex
from support import eventually, flushall, policy, send

from proxy.core.errors import StoreUnsafe
from proxy.core.types import ReservationSettings
from proxy.policy import load_policy
from proxy.store.ledger import RedisLedger
from proxy.store.redis.safety import check_eviction
from proxy.testing.local import local_stack


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
async def test_flushed_store_fails_closed_and_never_hands_out_a_fresh_budget(
    tmp_path: Path, redis_url: str, fail_mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    policy(tmp_path, "tenant: {limit: 10, period: month}")
    path = tmp_path / "policy.yaml"
    path.write_text(path.read_text().replace("fail_mode: closed", f"fail_mode: {fail_mode}"))
    the_policy = load_policy(path)
    async with (
        local_stack(the_policy, store=redis_url, sweep_every=0.05) as stack,
        aiohttp.ClientSession() as session,
    ):
        assert (await send(session, stack.url))[0] == 200
        flushall(redis_url)
        await eventually(lambda: "LEDGER EPOCH LOST" in caplog.text, "the epoch loss logged")
        calls = stack.fake.calls
        for tenant in ("alpha", "beta"):
            status, body = await send(session, stack.url, tenant)
            assert status == 503
            assert body["error"]["code"] == "ledger_epoch_lost"
        assert stack.fake.calls == calls, "nothing was forwarded on the flushed store"
        assert await stack.ledger.balances("alpha") == [], "nothing reserved on the new store"
    lost = [r for r in caplog.records if "LEDGER EPOCH LOST" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.CRITICAL


async def test_a_fresh_process_on_the_same_store_shares_its_epoch(redis_url: str) -> None:
    one = RedisLedger(redis_url, ReservationSettings(), "one")
    two = RedisLedger(redis_url, ReservationSettings(), "two")
    try:
        await one.connect()
        await two.connect()
        await one.heartbeat()
        await two.heartbeat()
        assert not one._epoch.lost and not two._epoch.lost
        assert one._epoch.expected == two._epoch.expected is not None
    finally:
        await one.close()
        await two.close()


@pytest.fixture
def evicting(redis_url: str) -> Iterator[str]:
    """The test server with maxmemory-policy allkeys-lru, restored afterwards."""
    client = redis.Redis.from_url(redis_url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        yield redis_url
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        client.close()


async def test_evicting_store_is_reported_at_connect(
    evicting: str, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = RedisLedger(evicting, ReservationSettings())
    try:
        await ledger.connect()
    finally:
        await ledger.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'allkeys-lru', not 'noeviction'" in r.getMessage() for r in warnings)


async def test_evicting_store_is_refused_with_require_noeviction(evicting: str) -> None:
    ledger = RedisLedger(evicting, ReservationSettings())
    try:
        with pytest.raises(StoreUnsafe, match="allkeys-lru"):
            await ledger.connect(require_noeviction=True)
    finally:
        await ledger.close()


async def test_noeviction_store_connects_quietly(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = RedisLedger(redis_url, ReservationSettings())
    try:
        await ledger.connect(require_noeviction=True)
    finally:
        await ledger.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


class _NoConfig:
    """A managed Redis that disabled CONFIG."""

    async def config_get(self, _name: str) -> dict[str, str]:
        raise rex.ResponseError("unknown command 'CONFIG'")


async def test_disabled_config_warns_that_eviction_could_not_be_checked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await check_eviction(cast(Any, _NoConfig()), require=False)
    assert "could not check the Redis store's maxmemory-policy" in caplog.text
    with pytest.raises(StoreUnsafe, match="--require-noeviction"):
        await check_eviction(cast(Any, _NoConfig()), require=True)


def test_serve_refuses_an_evicting_store_with_require_noeviction(
    tmp_path: Path, evicting: str
) -> None:
    policy(tmp_path, "tenant: {limit: 10, period: month}")
    args = ["serve", "--policy", str(tmp_path / "policy.yaml"), "--store", evicting]
    args += ["--admin-listen", "off", "--listen", "127.0.0.1:0"]
    args.append("--require-noeviction")
    result = subprocess.run(
        [sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "--require-noeviction" in result.stderr and "allkeys-lru" in result.stderr
