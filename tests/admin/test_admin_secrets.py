"""Replayable admin answers never hold a secret: a repeat of onboarding, key creation or rotation
with the same Idempotency-Key creates nothing and answers with the key's id, saying the key was
shown once; the answer kept for replays (in Redis, or in the process on memory://) holds no key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from boundary_support import Admin, bearer, call, gateway, with_admin
from support import chat, chat_prompt_tokens, line, mini_cost

from proxy.admin.shared import SHARED
from proxy.store.api_keys import PLAIN
from proxy.store.idempotency import PREFIX, MemoryIdempotency, slot
from proxy.store.redis.clients import is_redis

T = "/admin/v1/tenants"


async def kept_answers(admin: Admin, store_url: str) -> str:
    """Everything the admin idempotency store holds, as text."""
    if not is_redis(store_url):
        idempotency = admin.app[SHARED].stores.idempotency
        assert isinstance(idempotency, MemoryIdempotency)
        entries = idempotency._entries
        return repr({key: entries.get(key) for key in entries})
    client = aioredis.Redis.from_url(store_url, decode_responses=True)
    try:
        keys = [key async for key in client.scan_iter("cy:v1:idem:*")]
        return "\n".join([f"{key} {await client.get(key)}" for key in keys])
    finally:
        await client.aclose()


def assert_replay_names_the_key_only(first: dict[str, Any], replay: dict[str, Any]) -> None:
    """The replay is the first answer with the key itself taken out and a word on why."""
    plain = first["key"]
    assert PLAIN.fullmatch(plain)
    assert plain not in str(replay) and plain[3:] not in str(replay)
    assert replay["id"] == first["id"] and replay["prefix"] == first["prefix"]
    assert replay["key"] is None and replay["shown_once"] is True
    assert "shown once" in replay["message"] and first["id"] in replay["message"]
    assert {k: v for k, v in replay.items() if k not in ("key", "shown_once", "message")} == {
        k: v for k, v in first.items() if k != "key"
    }


@pytest.mark.parametrize("what", ["onboard", "create", "rotate"])
async def test_a_replayed_key_issuing_call_answers_with_the_key_id_and_stores_no_secret(
    tmp_path: Path, store_url: str, what: str
) -> None:
    async with with_admin(gateway(tmp_path), store_url) as (stack, admin):
        status, _, onboarded = await admin.call("POST", T, {"id": "acme", "plan": "test"})
        assert status == 201
        first_key = onboarded["api_key"]["id"]
        method, path, body = {
            "onboard": ("POST", T, {"id": "initech", "plan": "test"}),
            "create": ("POST", f"{T}/acme/keys", {"workspace": "w1"}),
            "rotate": ("POST", f"{T}/acme/keys/{first_key}/rotate", {"grace_seconds": 0}),
        }[what]
        status, headers, first = await admin.call(method, path, body, idempotency_key="k-1")
        assert status == 201 and "X-Cycles-Replayed" not in headers
        again_status, again_headers, replay = await admin.call(
            method, path, body, idempotency_key="k-1"
        )
        assert again_status == 201 and again_headers["X-Cycles-Replayed"] == "true"
        issued = first["api_key"] if what == "onboard" else first
        shown = replay["api_key"] if what == "onboard" else replay
        assert_replay_names_the_key_only(issued, shown)
        if what == "onboard":
            assert replay["tenant"] == first["tenant"]

        stored = await kept_answers(admin, store_url)
        assert issued["id"] in stored  # the store was read, and holds the replay
        assert issued["key"] not in stored and issued["key"][3:] not in stored
        assert not PLAIN.search(stored)

        tenant = "initech" if what == "onboard" else "acme"
        _, _, keys = await admin.call("GET", f"{T}/{tenant}/keys")
        assert len(keys["data"]) == (1 if what == "onboard" else 2)  # nothing issued twice
        status, _ = await call(stack, "POST", "/v1/chat/completions", bearer(issued["key"]), chat())
        assert status == 200  # the key shown the first time is the one issued
        spent = (await line(stack.ledger, tenant, "tenant")).spent
        assert spent == mini_cost(chat_prompt_tokens(chat()), 100)


async def test_answers_without_a_secret_are_replayed_whole(tmp_path: Path, store_url: str) -> None:
    async with with_admin(gateway(tmp_path), store_url) as (_, admin):
        await admin.call("POST", T, {"id": "acme", "plan": "test"})
        body = {"level": "tenant", "amount": "5", "reason": "goodwill"}
        first = await admin.call("POST", f"{T}/acme/adjustments", body, idempotency_key="c-1")
        again = await admin.call("POST", f"{T}/acme/adjustments", body, idempotency_key="c-1")
        assert again[0] == first[0] == 200 and again[2] == first[2]
        assert again[1]["X-Cycles-Replayed"] == "true"
        _, _, balances = await admin.call("GET", f"{T}/acme/balances")
        [line] = [b for b in balances["data"] if b["level"] == "tenant"]
        assert line["credit"]["units"] == 5 * 10**8  # credited once


async def test_an_answer_kept_by_the_previous_release_is_never_replayed(
    tmp_path: Path, redis_url: str
) -> None:
    """The previous release kept admin answers verbatim, an issued key included, under the same
    Redis keys. A retry that meets such a record is 409 `idempotency_key_outdated`: the old
    answer is not replayed (its secret stays in the store until it expires) and the call is not
    run again; what this release keeps carries its version, and no secret."""
    secret = "ck-" + "S" * 32
    body = {"id": "acme", "plan": "test"}
    raw = json.dumps(body).encode()  # what the admin client sends (aiohttp's json=)
    old = {
        "h": hashlib.sha256(raw).hexdigest(),
        "s": 201,
        "a": orjson.dumps({"tenant": body, "api_key": {"id": "key_x", "key": secret}}).decode(),
    }
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await client.set(PREFIX + slot("POST", T, "onboard-1"), orjson.dumps(old))
        async with with_admin(gateway(tmp_path), redis_url) as (_, admin):
            status, headers, answer = await admin.call("POST", T, body, idempotency_key="onboard-1")
            assert status == 409 and answer["error"]["code"] == "idempotency_key_outdated"
            assert "X-Cycles-Replayed" not in headers and secret not in str(answer)
            assert (await admin.call("GET", f"{T}/acme"))[0] == 404  # not run again either

            status, _, first = await admin.call("POST", T, body, idempotency_key="onboard-2")
            assert status == 201
            kept = orjson.loads(await client.get(PREFIX + slot("POST", T, "onboard-2")))
            # The fields the previous release reads keep their meaning: it replays this one.
            assert kept["v"] == 2 and (kept["h"], kept["s"]) == (old["h"], 201)
            assert first["api_key"]["key"] not in kept["a"]
            assert orjson.loads(kept["a"])["api_key"]["id"] == first["api_key"]["id"]
    finally:
        await client.aclose()
