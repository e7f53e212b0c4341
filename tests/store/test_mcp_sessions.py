"""Which tenant bound which MCP session (proxy/store/mcp_sessions.py), on memory://, a real Redis
and a real Redis Cluster: only the tenant that bound a session of a server holds it, holding
refreshes its life, it expires and can be forgotten; the memory store is bounded (oldest
dropped), and an unreachable or refusing Redis is LedgerUnavailable. A request id in a session is
claimed by one caller at a time (every store of one Redis alike) until freed or expired, and
`holds_claiming` claims only in a session the tenant holds."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from conftest import CLUSTER, EVERY_STORE, REDIS, Opener, free_port

from proxy.core.errors import LedgerUnavailable
from proxy.core.types import ReservationSettings
from proxy.store.mcp_sessions import McpSessions, MemorySessions, request_digest, session_digest
from proxy.store.open import open_store
from proxy.store.redis.layout import mcp_claim_key, mcp_session_key

LONG = 60_000
SESSION = "a1b2c3-" + "x" * 500
"""A session id as long as a server may make it."""


@pytest.fixture
def sessions(opener: Opener) -> McpSessions:
    return opener.open().mcp_sessions


@EVERY_STORE
async def test_the_tenant_that_bound_a_session_holds_it(sessions: McpSessions) -> None:
    assert not await sessions.holds("acme", "crm", SESSION, LONG)
    await sessions.bind("acme", "crm", SESSION, LONG)
    assert await sessions.holds("acme", "crm", SESSION, LONG)
    assert await sessions.holds("acme", "crm", SESSION, LONG)


@EVERY_STORE
async def test_another_tenant_does_not_hold_a_session_it_did_not_bind(
    sessions: McpSessions,
) -> None:
    await sessions.bind("acme", "crm", SESSION, LONG)
    assert not await sessions.holds("globex", "crm", SESSION, LONG)
    await sessions.bind("globex", "crm", "other", LONG)
    assert not await sessions.holds("acme", "crm", "other", LONG)
    assert await sessions.holds("acme", "crm", SESSION, LONG)


@EVERY_STORE
async def test_a_session_of_one_server_is_not_held_on_another(sessions: McpSessions) -> None:
    await sessions.bind("acme", "crm", SESSION, LONG)
    assert not await sessions.holds("acme", "search", SESSION, LONG)


@EVERY_STORE
async def test_a_session_expires_unless_held_and_holding_refreshes_it(
    sessions: McpSessions,
) -> None:
    await sessions.bind("acme", "crm", "brief", 150)
    await sessions.bind("acme", "crm", "kept", 150)
    await asyncio.sleep(0.1)
    assert await sessions.holds("acme", "crm", "kept", 150)
    await asyncio.sleep(0.1)
    assert await sessions.holds("acme", "crm", "kept", 150)
    assert not await sessions.holds("acme", "crm", "brief", 150)
    await asyncio.sleep(0.2)
    assert not await sessions.holds("acme", "crm", "kept", 150)


@EVERY_STORE
async def test_a_forgotten_session_is_held_no_more_and_forgetting_twice_is_harmless(
    sessions: McpSessions,
) -> None:
    await sessions.bind("acme", "crm", SESSION, LONG)
    await sessions.bind("acme", "crm", "other", LONG)
    await sessions.forget("globex", "crm", SESSION)
    assert await sessions.holds("acme", "crm", SESSION, LONG)
    await sessions.forget("acme", "crm", SESSION)
    await sessions.forget("acme", "crm", SESSION)
    assert not await sessions.holds("acme", "crm", SESSION, LONG)
    assert await sessions.holds("acme", "crm", "other", LONG)


@EVERY_STORE
async def test_a_ttl_that_is_not_a_positive_integer_is_refused(sessions: McpSessions) -> None:
    for ttl in (0, -1, 1.5):
        with pytest.raises(ValueError, match="ttl_ms must be a positive integer"):
            await sessions.bind("acme", "crm", SESSION, ttl)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="ttl_ms must be a positive integer"):
            await sessions.holds("acme", "crm", SESSION, ttl)  # type: ignore[arg-type]
    assert not await sessions.holds("acme", "crm", SESSION, LONG)


async def test_memory_expiry_follows_its_clock() -> None:
    now = [100.0]
    sessions = MemorySessions(clock=lambda: now[0])
    await sessions.bind("acme", "crm", SESSION, 10_000)
    now[0] += 9.9
    assert await sessions.holds("acme", "crm", SESSION, 10_000)
    now[0] += 9.9
    assert await sessions.holds("acme", "crm", SESSION, 10_000)
    now[0] += 10.0
    assert not await sessions.holds("acme", "crm", SESSION, 10_000)
    assert len(sessions) == 0


async def test_memory_drops_a_tenants_oldest_beyond_its_bound_and_only_its_own() -> None:
    sessions = MemorySessions(max_bindings=10, tenant_bindings=3)
    await sessions.bind("globex", "crm", "g", LONG)
    for name in ("s1", "s2", "s3"):
        await sessions.bind("acme", "crm", name, LONG)
    assert await sessions.holds("acme", "crm", "s1", LONG)  # now the newest of acme's
    await sessions.bind("acme", "crm", "s4", LONG)
    held = [n for n in ("s1", "s2", "s3", "s4") if await sessions.holds("acme", "crm", n, LONG)]
    assert held == ["s1", "s3", "s4"]
    assert await sessions.holds("globex", "crm", "g", LONG)
    assert len(sessions) == 4


async def test_memory_drops_the_oldest_of_all_beyond_the_global_bound() -> None:
    sessions = MemorySessions(max_bindings=4, tenant_bindings=3)
    for tenant in ("t1", "t2", "t3", "t4", "t5"):
        await sessions.bind(tenant, "crm", "s", LONG)
    assert len(sessions) == 4
    assert not await sessions.holds("t1", "crm", "s", LONG)
    for tenant in ("t2", "t3", "t4", "t5"):
        assert await sessions.holds(tenant, "crm", "s", LONG)
    await sessions.bind("t1", "crm", "s", LONG)
    await sessions.bind("t1", "crm", "u", LONG)
    assert not await sessions.holds("t2", "crm", "s", LONG)
    assert not await sessions.holds("t3", "crm", "s", LONG)
    assert len(sessions) == 4


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_an_unreachable_redis_is_unavailable(scheme: str) -> None:
    stores = open_store(f"{scheme}://127.0.0.1:{free_port()}", ReservationSettings())
    try:
        for call in (
            stores.mcp_sessions.bind("acme", "crm", SESSION, LONG),
            stores.mcp_sessions.holds("acme", "crm", SESSION, LONG),
            stores.mcp_sessions.forget("acme", "crm", SESSION),
            stores.mcp_sessions.claim("acme", "crm", SESSION, "7", LONG, "t"),
            stores.mcp_sessions.free("acme", "crm", SESSION, "7", "t"),
            stores.mcp_sessions.holds_claiming("acme", "crm", SESSION, LONG, "7", LONG, "t"),
        ):
            with pytest.raises(LedgerUnavailable, match=r"^MCP session store"):
                await call
    finally:
        await stores.close()


@pytest.mark.parametrize("store_url", [REDIS, CLUSTER], indirect=True)
async def test_a_session_is_one_key_under_the_tenants_hash_tag_with_its_ttl(
    store_url: str, sessions: McpSessions
) -> None:
    raw = aioredis.RedisCluster if "cluster" in store_url else aioredis.Redis
    client = raw.from_url(store_url.replace("redis+cluster://", "redis://"))
    try:
        await sessions.bind("acme", "crm", SESSION, LONG)
        key = mcp_session_key("acme", "crm", session_digest(SESSION))
        assert key == f"cy:v1:{{t:acme}}:mcp:crm:{session_digest(SESSION)}"
        assert 0 < await client.pttl(key) <= LONG
    finally:
        await client.aclose()


@EVERY_STORE
async def test_a_request_id_is_claimed_by_one_caller_until_freed(sessions: McpSessions) -> None:
    assert await sessions.claim("acme", "crm", SESSION, "7", LONG, "t")
    assert not await sessions.claim("acme", "crm", SESSION, "7", LONG, "t")
    for other in (
        ("acme", "crm", SESSION, "8"),
        ("acme", "crm", "other", "7"),
        ("acme", "search", SESSION, "7"),
        ("globex", "crm", SESSION, "7"),
    ):
        assert await sessions.claim(*other, LONG, "t"), other
    await sessions.free("acme", "crm", SESSION, "7", "t")
    await sessions.free("acme", "crm", SESSION, "7", "t")
    assert await sessions.claim("acme", "crm", SESSION, "7", LONG, "t")
    assert not await sessions.claim("acme", "crm", SESSION, "8", LONG, "t")


@EVERY_STORE
async def test_a_claim_expires_by_itself(sessions: McpSessions) -> None:
    assert await sessions.claim("acme", "crm", SESSION, "7", 150, "t")
    assert not await sessions.claim("acme", "crm", SESSION, "7", 150, "t")
    await asyncio.sleep(0.25)
    assert await sessions.claim("acme", "crm", SESSION, "7", LONG, "t")
    with pytest.raises(ValueError, match="ttl_ms must be a positive integer"):
        await sessions.claim("acme", "crm", SESSION, "9", 0, "t")


@EVERY_STORE
async def test_holds_claiming_claims_only_in_a_session_held(sessions: McpSessions) -> None:
    assert await sessions.holds_claiming("acme", "crm", SESSION, 150, "7", LONG, "t") == (
        False,
        False,
    )
    assert await sessions.claim("acme", "crm", SESSION, "7", LONG, "t")  # nothing was left claimed
    await sessions.free("acme", "crm", SESSION, "7", "t")
    await sessions.bind("acme", "crm", SESSION, 150)
    assert await sessions.holds_claiming("acme", "crm", SESSION, 150, "7", LONG, "t") == (
        True,
        True,
    )
    await asyncio.sleep(0.1)
    assert await sessions.holds_claiming("acme", "crm", SESSION, 150, "7", LONG, "t") == (
        True,
        False,
    )
    await asyncio.sleep(0.1)  # past the bind's 150 ms: the checks refreshed it
    assert await sessions.holds("acme", "crm", SESSION, 150)
    assert await sessions.holds_claiming("globex", "crm", SESSION, 150, "8", LONG, "t") == (
        False,
        False,
    )
    with pytest.raises(ValueError, match="ttl_ms must be a positive integer"):
        await sessions.holds_claiming("acme", "crm", SESSION, 150, "9", 0, "t")
    assert await sessions.claim("acme", "crm", SESSION, "9", LONG, "t")


@pytest.mark.parametrize("store_url", [REDIS, CLUSTER], indirect=True)
async def test_a_claim_holds_across_stores_on_one_redis(store_url: str, opener: Opener) -> None:
    first, second = opener.open().mcp_sessions, opener.open().mcp_sessions
    await first.bind("acme", "crm", SESSION, LONG)
    assert await first.holds_claiming("acme", "crm", SESSION, LONG, "7", LONG, "t") == (True, True)
    assert await second.holds_claiming("acme", "crm", SESSION, LONG, "7", LONG, "t") == (
        True,
        False,
    )
    assert not await second.claim("acme", "crm", SESSION, "7", LONG, "t")
    await first.free("acme", "crm", SESSION, "7", "t")
    assert await second.holds_claiming("acme", "crm", SESSION, LONG, "7", LONG, "t") == (True, True)


@pytest.mark.parametrize("store_url", [REDIS, CLUSTER], indirect=True)
async def test_a_claim_is_one_key_under_the_tenants_hash_tag_with_its_ttl(
    store_url: str, sessions: McpSessions
) -> None:
    raw = aioredis.RedisCluster if "cluster" in store_url else aioredis.Redis
    client = raw.from_url(store_url.replace("redis+cluster://", "redis://"))
    try:
        await sessions.bind("acme", "crm", SESSION, LONG)
        await sessions.holds_claiming("acme", "crm", SESSION, LONG, "7", 30_000, "t")
        key = mcp_claim_key("acme", "crm", session_digest(SESSION), request_digest("7"))
        digests = f"{session_digest(SESSION)}:{request_digest('7')}"
        assert key == f"cy:v1:{{t:acme}}:mcpid:crm:{digests}"
        assert 0 < await client.pttl(key) <= 30_000
        await sessions.free("acme", "crm", SESSION, "7", "t")
        assert await client.exists(key) == 0
    finally:
        await client.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_a_late_free_leaves_the_next_holders_claim() -> None:
    """The first request's claim expired while its handler still ran and a second took the
    id: the first handler's free must not drop the second's claim."""
    clock = Clock()
    store = MemorySessions(clock)
    await store.bind("acme", "crm", "S", 3_600_000)
    assert await store.holds_claiming("acme", "crm", "S", 3_600_000, "7", 1_000, "a") == (
        True,
        True,
    )
    clock.now += 2
    assert await store.holds_claiming("acme", "crm", "S", 3_600_000, "7", 60_000, "b") == (
        True,
        True,
    )
    await store.free("acme", "crm", "S", "7", "a")  # the FIRST handler ends
    third = await store.holds_claiming("acme", "crm", "S", 3_600_000, "7", 60_000, "c")
    assert third == (True, False), "the second request's claim was freed by the first's handler"
    await store.free("acme", "crm", "S", "7", "b")
    assert await store.claim("acme", "crm", "S", "7", 60_000, "c")


@EVERY_STORE
async def test_a_claim_is_freed_only_by_the_token_that_made_it(sessions: McpSessions) -> None:
    await sessions.bind("acme", "crm", SESSION, LONG)
    assert await sessions.holds_claiming("acme", "crm", SESSION, LONG, "7", 100, "a") == (
        True,
        True,
    )
    await asyncio.sleep(0.2)  # the first claim expired while its handler ran
    assert await sessions.holds_claiming("acme", "crm", SESSION, LONG, "7", LONG, "b") == (
        True,
        True,
    )
    await sessions.free("acme", "crm", SESSION, "7", "a")
    assert not await sessions.claim("acme", "crm", SESSION, "7", LONG, "c")
    await sessions.free("acme", "crm", SESSION, "7", "b")
    assert await sessions.claim("acme", "crm", SESSION, "7", LONG, "c")
