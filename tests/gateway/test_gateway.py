"""Gateway mode (`identity: api_key`): the caller's key names the tenant, end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import redis.asyncio as aioredis
from support import (
    chat,
    chat_prompt_tokens,
    eventually,
    following_key_events,
    line,
    mini_cost,
    policy,
)

from proxy.core.errors import LedgerUnavailable
from proxy.core.types import ReservationSettings
from proxy.gateway.admission import ADMISSION
from proxy.gateway.context import API_KEYS
from proxy.policy.runtime import Policy
from proxy.store.api_keys import Keys
from proxy.store.open import open_store
from proxy.testing.local import Stack, local_stack

MESSAGES = [{"role": "user", "content": "Write a haiku about budgets."}]
BUDGETS = """
tenant: {limit: 50, period: month}
workspace: {limit: 50, period: month}
"""


def gateway(tmp_path: Path) -> Policy:
    return dataclasses.replace(policy(tmp_path, BUDGETS), identity="api_key")


def keys_of(stack: Stack) -> Keys:
    return stack.app[API_KEYS]


def bearer(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


async def post(stack: Stack, headers: dict[str, str]) -> tuple[int, dict[str, Any], Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(stack.url + "/v1/chat/completions", json=chat(), headers=headers) as answer,
    ):
        return answer.status, dict(answer.headers), await answer.json()


async def get_models(stack: Stack, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(stack.url + "/v1/models", headers=headers) as answer,
    ):
        return answer.status


@asynccontextmanager
async def proxy(tmp_path: Path, store_url: str, **kwargs: Any) -> AsyncIterator[Stack]:
    async with local_stack(gateway(tmp_path), store=store_url, sweep_every=None, **kwargs) as s:
        yield s


async def test_sdk_call_is_charged_to_the_keys_tenant(tmp_path: Path, store_url: str) -> None:
    async with proxy(tmp_path, store_url) as stack:
        plain, _ = await keys_of(stack).create("alpha")
        async with openai.AsyncOpenAI(base_url=stack.url + "/v1", api_key=plain) as client:
            completion = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=20
            )  # type: ignore[arg-type]
        assert completion.usage is not None and completion.usage.completion_tokens == 20
        spent = (await line(stack.ledger, "alpha", "tenant")).spent
        prompt = chat_prompt_tokens({"model": "gpt-4o-mini", "messages": MESSAGES})
        assert spent == mini_cost(prompt, 20)
        assert await stack.ledger.balances("beta") == []


async def test_header_naming_another_tenant_is_403_and_nothing_reserved(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        plain, _ = await keys_of(stack).create("alpha")
        status, _, body = await post(stack, bearer(plain, **{"X-Cycles-Tenant": "beta"}))
        assert status == 403 and body["error"]["type"] == "tenant_mismatch"
        assert await stack.ledger.balances("alpha") == []
        assert await stack.ledger.balances("beta") == []
        assert stack.fake.calls == 0
        status, _, _ = await post(stack, bearer(plain, **{"X-Cycles-Tenant": "ALPHA"}))
        assert status == 200


async def test_narrowed_key_fixes_its_workspace(tmp_path: Path, store_url: str) -> None:
    async with proxy(tmp_path, store_url) as stack:
        plain, _ = await keys_of(stack).create("alpha", workspace="w1")
        status, _, body = await post(stack, bearer(plain, **{"X-Cycles-Workspace": "w2"}))
        assert status == 403 and body["error"]["type"] == "scope_mismatch"
        assert await stack.ledger.balances("alpha") == []
        status, _, _ = await post(stack, bearer(plain))
        assert status == 200
        assert (await line(stack.ledger, "alpha", "workspace", "w1")).spent > 0
        status, _, _ = await post(stack, bearer(plain, **{"X-Cycles-Workspace": "W1"}))
        assert status == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer sk-not-one-of-ours"},
        {"Authorization": "Basic Y2stYWJj"},
        {"Authorization": "Bearer ck-tooshort"},
        {"Authorization": "Bearer ck-" + "A" * 32},
        {"X-Cycles-Tenant": "alpha"},
    ],
    ids=["missing", "provider-key", "basic", "malformed", "unknown", "header-only"],
)
async def test_missing_malformed_or_unknown_key_is_401(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    async with proxy(tmp_path, "memory://") as stack:
        status, answer_headers, body = await post(stack, headers)
        assert status == 401
        assert body["error"]["code"] == "invalid_api_key"
        assert "Authorization: Bearer ck-" in body["error"]["message"]
        assert answer_headers["WWW-Authenticate"].startswith("Bearer")
        assert await stack.ledger.balances("alpha") == []
        assert stack.fake.calls == 0


async def test_revocation_is_immediate_with_a_warm_cache(tmp_path: Path, store_url: str) -> None:
    async with proxy(tmp_path, store_url) as stack:
        plain, record = await keys_of(stack).create("alpha")
        assert (await post(stack, bearer(plain)))[0] == 200
        await keys_of(stack).revoke("alpha", record.key_id)
        status, _, body = await post(stack, bearer(plain))
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        assert stack.fake.calls == 1


async def test_revocation_reaches_every_replica(tmp_path: Path, redis_url: str) -> None:
    async with proxy(tmp_path, redis_url) as first, proxy(tmp_path, redis_url) as second:
        plain, record = await keys_of(first).create("alpha")
        await following_key_events(keys_of(second), redis_url)
        assert await get_models(first, bearer(plain)) == 200
        assert await get_models(second, bearer(plain)) == 200  # both caches warm
        await keys_of(first).revoke("alpha", record.key_id)
        assert await get_models(first, bearer(plain)) == 401

        async def second_refuses() -> bool:
            return await get_models(second, bearer(plain)) == 401

        await eventually(second_refuses, "the second replica refusing the revoked key")


async def test_rotated_key_works_through_its_grace_then_401(tmp_path: Path, store_url: str) -> None:
    now = [1_700_000_000_000]
    stores = open_store(store_url, ReservationSettings(), clock=lambda: now[0])
    try:
        async with proxy(tmp_path, store_url, key_store=stores.api_keys) as stack:
            old, record = await keys_of(stack).create("alpha")
            assert (await post(stack, bearer(old)))[0] == 200  # cached from here on
            new, _ = await keys_of(stack).rotate("alpha", record.key_id, grace_ms=60_000)
            assert (await post(stack, bearer(old)))[0] == 200
            now[0] += 59_999
            assert (await post(stack, bearer(old)))[0] == 200
            now[0] += 1
            assert (await post(stack, bearer(old)))[0] == 401
            assert (await post(stack, bearer(new)))[0] == 200
            assert stack.fake.calls == 4
    finally:
        await stores.close()


async def test_burst_of_unknown_keys_costs_one_lookup_each(tmp_path: Path, store_url: str) -> None:
    async with proxy(tmp_path, store_url) as stack:
        # Subscribing to key events empties the cache: let that happen before counting.
        await following_key_events(keys_of(stack), store_url)
        store = keys_of(stack).store
        asked: list[str] = []
        lookup = store.lookup

        async def counting(sha: str) -> Any:
            asked.append(sha)
            return await lookup(sha)

        store.lookup = counting  # type: ignore[method-assign]
        unknown = [f"ck-{i:032d}" for i in range(5)]
        for _ in range(3):
            statuses = await asyncio.gather(*(post(stack, bearer(k)) for k in unknown))
            assert [s for s, _, _ in statuses] == [401] * 5
        assert len(asked) == 5


async def test_21st_failed_auth_in_a_minute_is_429(tmp_path: Path, store_url: str) -> None:
    async with proxy(tmp_path, store_url) as stack:
        for i in range(20):
            assert (await post(stack, bearer(f"ck-{i:032d}")))[0] == 401
        status, headers, body = await post(stack, bearer(f"ck-{20:032d}"))
        assert status == 429 and body["error"]["code"] == "too_many_failed_auth"
        assert 0 < int(headers["Retry-After"]) <= 60
        assert stack.fake.calls == 0


async def test_models_and_passthrough_need_a_key(tmp_path: Path) -> None:
    async with proxy(tmp_path, "memory://") as stack:
        plain, _ = await keys_of(stack).create("alpha")
        assert await get_models(stack, {}) == 401
        assert await get_models(stack, bearer(plain)) == 200


async def test_rejections_reach_the_hook(tmp_path: Path) -> None:
    async with proxy(tmp_path, "memory://") as stack:
        seen: list[tuple[str | None, str]] = []

        async def hook(tenant: str | None, reason: str) -> None:
            seen.append((tenant, reason))

        stack.app[ADMISSION].callers.on_rejected = hook
        plain, record = await keys_of(stack).create("alpha")
        await post(stack, bearer(plain, **{"X-Cycles-Tenant": "beta"}))
        await post(stack, bearer("ck-" + "B" * 32))
        await keys_of(stack).revoke("alpha", record.key_id)
        await post(stack, bearer(plain))
        assert seen == [
            ("alpha", "tenant_mismatch"),
            (None, "unknown_api_key"),
            ("alpha", "revoked_api_key"),
        ]


async def test_plain_key_is_in_neither_redis_nor_the_logs(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with proxy(tmp_path, redis_url) as stack:
        plain, record = await keys_of(stack).create("alpha", workspace="w1")
        assert (await post(stack, bearer(plain)))[0] == 200
        await post(stack, bearer(plain, **{"X-Cycles-Tenant": "beta"}))
        rotated, _ = await keys_of(stack).rotate("alpha", record.key_id, grace_ms=0)
        await post(stack, bearer(plain))
        assert await get_models(stack, bearer(rotated)) == 200
    dump = await _dump(redis_url)
    assert record.key_id in dump  # the dump did read the key records
    for secret in (plain, rotated, plain[3:], rotated[3:]):
        assert secret not in dump
        assert secret not in caplog.text


async def _dump(url: str) -> str:
    """Every key and value in the Redis, as text."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    parts: list[str] = []
    try:
        async for key in client.scan_iter(count=1000):
            kind = await client.type(key)
            if kind == "hash":
                value: Any = await client.hgetall(key)
            elif kind == "string":
                value = await client.get(key)
            elif kind == "zset":
                value = await client.zrange(key, 0, -1, withscores=True)
            elif kind == "set":
                value = await client.smembers(key)
            elif kind == "list":
                value = await client.lrange(key, 0, -1)
            else:
                value = await client.dump(key)
            parts.append(f"{key} {value!r}")
    finally:
        await client.aclose()
    return "\n".join(parts)


async def test_unreachable_key_store_is_503_not_401(tmp_path: Path) -> None:
    async with proxy(tmp_path, "memory://") as stack:
        plain, _ = await keys_of(stack).create("alpha")

        async def down(sha: str) -> Any:
            raise LedgerUnavailable("the Redis key store is unreachable: test")

        keys_of(stack).store.lookup = down  # type: ignore[method-assign]
        status, headers, body = await post(stack, bearer(plain))
        assert status == 503 and "key store is unreachable" in body["error"]["message"]
        assert headers["Retry-After"] == "2"
        assert stack.fake.calls == 0
