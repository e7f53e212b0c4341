"""Key stores (every store of conftest.ALL_STORES, one suite) and the cache in front of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from conftest import EVERY_STORE
from support import eventually, following_key_events

from proxy.core import tasks
from proxy.core.types import ReservationSettings
from proxy.store.api_keys import (
    PLAIN,
    Failures,
    KeyNotFound,
    Keys,
    KeyStore,
    RedisKeyStore,
    digest,
)
from proxy.store.api_keys.redis import EVENTS, GLOBAL, tenant_keys
from proxy.store.open import open_store

T0 = 1_700_000_000_000


class Clock:
    """A settable clock, in ms (stores) or s (cache and failure window)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def ms(self) -> int:
        return int(self.now)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def store(store_url: str, clock: Clock) -> AsyncIterator[KeyStore]:
    stores = open_store(store_url, ReservationSettings(), clock=clock.ms)
    yield stores.api_keys
    await stores.close()


def count_lookups(store: KeyStore) -> list[str]:
    """Record every sha the store is asked for."""
    asked: list[str] = []
    lookup = store.lookup

    async def counting(sha: str) -> object:
        asked.append(sha)
        return await lookup(sha)

    store.lookup = counting  # type: ignore[method-assign]
    return asked


@EVERY_STORE
async def test_created_key_is_shown_once_and_found_by_its_hash(store: KeyStore) -> None:
    plain, record = await store.create("Alpha", workspace="W1")
    assert PLAIN.fullmatch(plain)
    assert (record.tenant, record.workspace, record.app) == ("alpha", "w1", None)
    assert (record.state, record.expires_ms, record.created_ms) == ("active", 0, T0)
    assert record.prefix == plain[3:9]
    assert await store.lookup(digest(plain)) == record
    assert await store.lookup(digest(plain + "x")) is None


@EVERY_STORE
async def test_listing_never_carries_the_key_or_its_hash(store: KeyStore) -> None:
    plain, first = await store.create("alpha")
    _, second = await store.create("alpha", app="bot")
    await store.create("beta")
    listed = await store.list("alpha")
    assert {r.key_id for r in listed} == {first.key_id, second.key_id}
    assert plain not in repr(listed) and digest(plain) not in repr(listed)


@EVERY_STORE
async def test_revoked_key_is_found_revoked_and_unknown_ids_are_refused(store: KeyStore) -> None:
    plain, record = await store.create("alpha")
    await store.revoke("alpha", record.key_id)
    found = await store.lookup(digest(plain))
    assert found is not None and found.state == "revoked" and not found.usable(T0)
    await store.revoke("alpha", record.key_id)  # idempotent
    with pytest.raises(KeyNotFound):
        await store.revoke("beta", record.key_id)
    with pytest.raises(KeyNotFound):
        await store.revoke("alpha", "key_nosuchkey000")


@EVERY_STORE
async def test_rotated_key_works_until_its_grace_ends(store: KeyStore, clock: Clock) -> None:
    old_plain, old = await store.create("alpha", workspace="w1")
    new_plain, new = await store.rotate("alpha", old.key_id, grace_ms=5_000)
    assert new_plain != old_plain and (new.tenant, new.workspace) == ("alpha", "w1")
    ending = await store.lookup(digest(old_plain))
    assert ending is not None and ending.expires_ms == T0 + 5_000
    assert ending.usable(T0 + 4_999) and not ending.usable(T0 + 5_000)
    fresh = await store.lookup(digest(new_plain))
    assert fresh is not None and fresh.usable(T0 + 10**9)
    clock.now += 5_000
    with pytest.raises(KeyNotFound):
        await store.rotate("alpha", old.key_id, grace_ms=5_000)


@EVERY_STORE
async def test_revoke_all_closes_every_key_of_the_tenant(store: KeyStore) -> None:
    keys = [await store.create("alpha") for _ in range(3)]
    _, other = await store.create("beta")
    await store.revoke("alpha", keys[0][1].key_id)
    assert await store.revoke_all("alpha") == 2
    assert all(r.state == "revoked" for r in await store.list("alpha"))
    assert [r.state for r in await store.list("beta")] == ["active"]
    for plain, _ in keys:
        found = await store.lookup(digest(plain))
        assert found is not None and found.state == "revoked"
    assert other.state == "active"


@EVERY_STORE
async def test_invalid_scope_values_are_refused(store: KeyStore) -> None:
    with pytest.raises(ValueError, match="tenant"):
        await store.create("al:pha")
    with pytest.raises(ValueError, match="workspace"):
        await store.create("alpha", workspace="a/b")


@EVERY_STORE
async def test_unknown_key_costs_one_lookup_per_negative_ttl(store: KeyStore) -> None:
    asked = count_lookups(store)
    now = Clock(100.0)
    keys = Keys(store, clock=now)
    unknown = [digest(f"ck-{i:032d}") for i in range(5)]
    await asyncio.gather(*(keys.lookup(sha) for sha in unknown * 20))
    for sha in unknown * 5:
        assert await keys.lookup(sha) is None
    assert sorted(asked) == sorted(unknown)
    now.now += 9.9
    await keys.lookup(unknown[0])
    assert len(asked) == 5
    now.now += 0.2
    await keys.lookup(unknown[0])
    assert len(asked) == 6


@EVERY_STORE
async def test_known_key_is_cached_for_a_minute(store: KeyStore) -> None:
    plain, record = await store.create("alpha")
    asked = count_lookups(store)
    now = Clock(100.0)
    keys = Keys(store, clock=now)
    for _ in range(50):
        assert await keys.lookup(digest(plain)) == record
    now.now += 59.9
    await keys.lookup(digest(plain))
    assert len(asked) == 1
    now.now += 0.2
    await keys.lookup(digest(plain))
    assert len(asked) == 2


@EVERY_STORE
async def test_a_change_through_the_store_evicts_at_once(store: KeyStore) -> None:
    plain, record = await store.create("alpha")
    keys = Keys(store)
    assert await keys.lookup(digest(plain)) == record
    await keys.revoke("alpha", record.key_id)
    found = await keys.lookup(digest(plain))
    assert found is not None and found.state == "revoked"


@EVERY_STORE
async def test_cache_is_bounded(store: KeyStore) -> None:
    keys = Keys(store, max_entries=3)
    for i in range(10):
        await keys.lookup(digest(f"ck-{i:032d}"))
        _, _ = await store.create("alpha")
    assert len(keys) <= 6  # at most max_entries positive + max_entries negative


@EVERY_STORE
async def test_lookup_racing_a_revocation_is_not_cached(store: KeyStore) -> None:
    plain, record = await store.create("alpha")
    keys = Keys(store)
    lookup = store.lookup
    read, gate = asyncio.Event(), asyncio.Event()

    async def slow(sha: str) -> object:
        answer = await lookup(sha)
        read.set()
        await gate.wait()
        return answer

    store.lookup = slow  # type: ignore[method-assign]
    pending = asyncio.ensure_future(keys.lookup(digest(plain)))
    await read.wait()
    await store.revoke("alpha", record.key_id)
    gate.set()
    assert (await pending) == record  # the stale answer goes to the caller that asked before…
    store.lookup = lookup  # type: ignore[method-assign]
    found = await keys.lookup(digest(plain))  # …but is not kept
    assert found is not None and found.state == "revoked"


async def test_revocation_reaches_another_process_through_pubsub(redis_url: str) -> None:
    here, there = RedisKeyStore(redis_url), RedisKeyStore(redis_url)
    keys = Keys(there)
    watcher = tasks.spawn(keys.watch(), name="test key events")
    try:
        plain, record = await here.create("alpha")
        await following_key_events(keys, redis_url)
        assert await keys.lookup(digest(plain)) == record  # warm
        await here.revoke("alpha", record.key_id)
        await eventually(lambda: len(keys) == 0, "the revoked key leaving the other cache")
        found = await keys.lookup(digest(plain))
        assert found is not None and found.state == "revoked"
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await here.close()
        await there.close()


async def test_redis_layout(redis_url: str) -> None:
    store = RedisKeyStore(redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = client.pubsub()
    await pubsub.subscribe(EVENTS)
    try:
        plain, record = await store.create("alpha", app="bot")
        sha = digest(plain)
        row = f"{sha} {record.key_id} alpha - bot active 0 {record.created_ms} {record.prefix}"
        assert await client.hgetall(GLOBAL) == {sha: row}
        assert await client.hgetall(tenant_keys("alpha")) == {record.key_id: row}
        assert tenant_keys("alpha") == "cy:v1:{t:alpha}:keys"
        messages = [await pubsub.get_message(timeout=1.0) for _ in range(2)]
        assert [m["data"] for m in messages if m and m["type"] == "message"] == [f"key {sha}"]
        # The tenant side is the truth: an index entry without it authenticates nothing.
        await client.hdel(tenant_keys("alpha"), record.key_id)
        assert await store.lookup(sha) is None
    finally:
        await pubsub.aclose()
        await client.aclose()
        await store.close()


def test_failures_block_a_client_after_twenty_in_a_minute() -> None:
    now = Clock(1000.0)
    failures = Failures(clock=now)
    for _ in range(19):
        failures.record("10.0.0.1")
        now.now += 1
    assert failures.blocked_for("10.0.0.1") == 0
    failures.record("10.0.0.1")
    assert failures.blocked_for("10.0.0.1") == 41  # the first failure leaves the window at 1060
    assert failures.blocked_for("10.0.0.2") == 0
    now.now += 41
    assert failures.blocked_for("10.0.0.1") == 0


def test_failures_track_a_bounded_number_of_clients() -> None:
    failures = Failures(max_entries=2)
    for client in ("a", "b", "c"):
        failures.record(client)
    assert len(failures) == 2
