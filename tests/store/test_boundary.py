"""The error boundary each store class declares once (proxy/store/boundary.py, the Redis table in
proxy/store/redis/errors.py): whichever store a call reaches, nothing above it sees redis-py's
exceptions. An unreachable store is LedgerUnavailable (the caller applies fail_mode), naming the
store; a command the store refuses is LedgerError, except in the replay store, whose table makes
every Redis error LedgerUnavailable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from conftest import free_port

from proxy.core.errors import LedgerError, LedgerUnavailable
from proxy.core.types import ReservationSettings
from proxy.store.api_keys.redis import GLOBAL
from proxy.store.idempotency import PREFIX as ADMIN_KEYS
from proxy.store.open import Stores, open_store
from proxy.store.redis.layout import idempotency_key
from proxy.store.replays import Record

Call = Callable[[Stores], Awaitable[object]]
CALLS: dict[str, tuple[str, Call]] = {
    "ledger": ("the Redis ledger", lambda s: s.ledger.balances("acme")),
    "heartbeat": ("the Redis ledger", lambda s: s.ledger.heartbeat()),
    "tenants": ("the Redis ledger", lambda s: s.tenants.audit("acme")),
    "api_keys": ("the Redis key store", lambda s: s.api_keys.lookup("0" * 64)),
    "replays": ("idempotency store", lambda s: s.replays.claim("acme", "d", Record("h"))),
    "idempotency": ("the Redis idempotency store", lambda s: s.idempotency.begin("k", "h")),
    "mcp_sessions": ("MCP session store", lambda s: s.mcp_sessions.holds("acme", "m", "s", 1)),
}


@pytest.fixture
async def nowhere() -> AsyncIterator[Stores]:
    """Every store on a Redis URL nothing listens on."""
    stores = open_store(f"redis://127.0.0.1:{free_port()}/0", ReservationSettings())
    yield stores
    await stores.close()


@pytest.mark.parametrize("name", CALLS)
async def test_every_redis_store_is_unavailable_naming_itself_when_nothing_listens(
    nowhere: Stores, name: str
) -> None:
    store, call = CALLS[name]
    with pytest.raises(LedgerUnavailable, match=rf"^{store}"):
        await call(nowhere)


async def test_a_refused_command_is_a_store_error_but_a_replay_stores_refusal_is_unavailable(
    redis_url: str,
) -> None:
    """Keys of the wrong type make Redis refuse each store's command (WRONGTYPE)."""
    raw = aioredis.Redis.from_url(redis_url)
    stores = open_store(redis_url, ReservationSettings())
    try:
        await raw.lpush(GLOBAL, "x")
        await raw.lpush(ADMIN_KEYS + "k", "x")
        await raw.lpush(idempotency_key("acme", "d"), "x")
        for call, store in (
            (stores.api_keys.lookup("0" * 64), "the Redis key store"),
            (stores.idempotency.begin("k", "h"), "the Redis idempotency store"),
        ):
            with pytest.raises(LedgerError, match=rf"^{store} refused a command: WRONGTYPE") as got:
                await call
            assert not isinstance(got.value, LedgerUnavailable)
        with pytest.raises(LedgerUnavailable, match=r"^idempotency store: WRONGTYPE"):
            await stores.replays.claim("acme", "d", Record("h"))
    finally:
        await stores.close()
        await raw.aclose()
