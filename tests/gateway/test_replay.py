"""Client retries with an idempotency key: a call runs and is charged once; failures, streams
and oversized answers run again."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from support import (
    chat,
    chat_prompt_tokens,
    commands_seen,
    eventually,
    line,
    mini_cost,
    monitor,
    policy,
)

from proxy.core import tasks
from proxy.gateway import replay
from proxy.store import replays
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

SCOPE = {"X-Cycles-Tenant": "alpha", "X-Cycles-Workflow": "retry", "X-Cycles-Run": "r1"}
MESSAGES = [{"role": "user", "content": "Say hello."}]
BUDGETS = "tenant: {limit: 50, period: month}"


def one_call(max_tokens: int) -> int:
    """What one chat call with MESSAGES costs (the fake generates max_tokens)."""
    return mini_cost(chat_prompt_tokens(chat(MESSAGES[0]["content"])), max_tokens)


def sdk(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=SCOPE, max_retries=0
    )


async def create(client: openai.AsyncOpenAI, key: str, max_tokens: int = 10, **extra: Any) -> Any:
    return await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        extra_headers={"Idempotency-Key": key},
        **extra,
    )


async def post(
    session: aiohttp.ClientSession, stack: Stack, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    url = f"{stack.url}/v1/chat/completions"
    async with session.post(url, json=body, headers={**SCOPE, **headers}) as answer:
        return answer.status, dict(answer.headers), await answer.read()


async def settled() -> None:
    """Wait until no call is forwarding or settling (a call outlives a client that left)."""
    calls = [t for t in tasks.running() if t.get_name().startswith("call ")]
    if calls:
        await asyncio.wait(calls, timeout=10)


async def test_retry_after_dropped_connection_is_replayed_and_charged_once(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=0.5))
    key = str(uuid.uuid4())
    async with local_stack(policy(tmp_path, BUDGETS), store=store_url, fake=fake) as stack:
        gave_up = aiohttp.ClientTimeout(total=0.1)
        async with aiohttp.ClientSession(timeout=gave_up) as session:
            with pytest.raises(TimeoutError):
                await post(
                    session, stack, chat(MESSAGES[0]["content"], 10), {"Idempotency-Key": key}
                )
        await eventually(lambda: fake.calls == 1, "the call reaching the provider")
        await settled()
        async with sdk(stack) as client:
            first = await create(client, key)
            again = await create(client, key)
        assert fake.calls == 1
        completion = first.parse()
        assert completion.choices[0].message.content == " hello" * 10
        assert first.headers["x-cycles-replayed"] == "true"
        assert first.headers["x-cycles-decision"] == "ALLOW"
        assert first.http_response.content == again.http_response.content
        row = await line(stack.ledger, "alpha", "tenant")
        assert (row.spent, row.reserved) == (one_call(10), 0)


async def test_replay_returns_the_same_answer_and_reserves_nothing(tmp_path: Path) -> None:
    async with local_stack(policy(tmp_path, BUDGETS)) as stack, sdk(stack) as client:
        original = await create(client, "k-1")
        before = await stack.ledger.balances("alpha")
        replayed = await create(client, "k-1")
        assert await stack.ledger.balances("alpha") == before
    assert stack.fake.calls == 1
    assert replayed.http_response.content == original.http_response.content
    assert replayed.status_code == original.status_code == 200
    assert replayed.headers["content-type"] == original.headers["content-type"]
    assert "x-cycles-replayed" not in original.headers


async def test_keyed_call_costs_one_set_more_and_an_unkeyed_one_nothing(
    tmp_path: Path, redis_url: str
) -> None:
    async with (
        local_stack(policy(tmp_path, BUDGETS), store=redis_url, sweep_every=None) as stack,
        aiohttp.ClientSession() as session,
    ):
        body = chat("hi", 10)
        await post(session, stack, body, {"Idempotency-Key": "warm"})
        async with monitor(redis_url) as commands:
            await post(session, stack, body, {})
            await settled()
            unkeyed = await commands_seen(commands, 2)
            await post(session, stack, body, {"Idempotency-Key": "k-2"})
            await settled()
            keyed = await commands_seen(commands, 4)
            status, headers, _ = await post(session, stack, body, {"Idempotency-Key": "k-2"})
            replayed = await commands_seen(commands, 2)
    assert unkeyed == ["evalsha", "evalsha"]
    assert keyed == ["set", "evalsha", "evalsha", "set"]
    # A replay: the record, then the tenant's status (no reserve script sees it).
    assert (status, headers["X-Cycles-Replayed"], replayed) == (200, "true", ["set", "hgetall"])


async def test_duplicate_while_the_first_runs_is_409_in_flight(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=0.5))
    async with (
        local_stack(policy(tmp_path, BUDGETS), store=store_url, fake=fake) as stack,
        sdk(stack) as client,
    ):
        first = asyncio.ensure_future(create(client, "k-3"))
        await eventually(lambda: fake.in_flight > 0, "the first call reaching the provider")
        with pytest.raises(openai.ConflictError) as caught:
            await create(client, "k-3")
        assert (await first).status_code == 200
        row = await line(stack.ledger, "alpha", "tenant")
    error = caught.value
    assert error.status_code == 409
    assert error.response.headers["retry-after"] == str(replay.RETRY_AFTER_S)
    assert error.body == {
        "message": error.body["message"],  # type: ignore[index]
        "type": "conflict",
        "code": "idempotency_in_flight",
        "param": None,
    }
    assert fake.calls == 1
    assert (row.spent, row.reserved) == (one_call(10), 0)


async def test_same_key_with_another_body_is_422(tmp_path: Path, store_url: str) -> None:
    async with (
        local_stack(policy(tmp_path, BUDGETS), store=store_url) as stack,
        sdk(stack) as client,
    ):
        await create(client, "k-4", max_tokens=10)
        with pytest.raises(openai.UnprocessableEntityError) as caught:
            await create(client, "k-4", max_tokens=11)
        row = await line(stack.ledger, "alpha", "tenant")
    assert caught.value.body["type"] == "idempotency_key_reused"  # type: ignore[index]
    assert caught.value.body["code"] == "idempotency_key_reused"  # type: ignore[index]
    assert stack.fake.calls == 1
    assert row.spent == one_call(10)


async def test_an_answer_is_never_replayed_into_another_workflow_or_run(
    tmp_path: Path, store_url: str
) -> None:
    """The same key and body from another workflow, or another run, is another request: refused
    with 422 rather than handed the first scope's answer uncharged, and charged nowhere."""
    budgets = BUDGETS + "\nworkflow: {limit: 50, period: month}\nrun: {limit: 2}"
    elsewhere = [{**SCOPE, "X-Cycles-Workflow": "other"}, {**SCOPE, "X-Cycles-Run": "r2"}]
    async with local_stack(policy(tmp_path, budgets), store=store_url) as stack:
        async with sdk(stack) as client:
            assert (await create(client, "k-scope")).status_code == 200
        for headers in elsewhere:
            async with openai.AsyncOpenAI(
                base_url=stack.url + "/v1", api_key="unused", default_headers=headers, max_retries=0
            ) as other:
                with pytest.raises(openai.UnprocessableEntityError) as caught:
                    await create(other, "k-scope")
            assert caught.value.body["code"] == "idempotency_key_reused"  # type: ignore[index]
            assert "x-cycles-replayed" not in caught.value.response.headers
        rows = await stack.ledger.balances("alpha")
    charged = {(r.level, r.value): (r.spent, r.reserved) for r in rows}
    assert charged == {
        ("tenant", "alpha"): (one_call(10), 0),
        ("workflow", "retry"): (one_call(10), 0),
        ("run", "r1"): (one_call(10), 0),
    }
    assert stack.fake.calls == 1


async def test_stream_with_a_key_is_forwarded_and_charged_again(
    tmp_path: Path, store_url: str
) -> None:
    async with (
        local_stack(policy(tmp_path, BUDGETS), store=store_url) as stack,
        sdk(stack) as client,
    ):
        texts = []
        for _ in range(2):
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,  # type: ignore[arg-type]
                max_tokens=8,
                stream=True,
                extra_headers={"Idempotency-Key": "k-5"},
            )
            chunks = [chunk async for chunk in stream]
            texts.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
        await settled()
        row = await line(stack.ledger, "alpha", "tenant")
    assert texts == [" hello" * 8] * 2
    assert stack.fake.calls == 2
    assert (row.spent, row.reserved) == (2 * one_call(8), 0)


async def test_failed_first_call_releases_the_key(tmp_path: Path, store_url: str) -> None:
    fake = FakeUpstream(FakeSettings(fail_status=500))
    async with (
        local_stack(policy(tmp_path, BUDGETS), store=store_url, fake=fake) as stack,
        sdk(stack) as client,
    ):
        with pytest.raises(openai.InternalServerError):
            await create(client, "k-6")
        fake.settings.fail_status = None
        retried = await create(client, "k-6")
        row = await line(stack.ledger, "alpha", "tenant")
    assert retried.status_code == 200 and "x-cycles-replayed" not in retried.headers
    assert fake.calls == 2
    assert (row.spent, row.reserved) == (one_call(10), 0)


async def test_denied_first_call_releases_the_key(tmp_path: Path) -> None:
    tight = f"tenant: {{limit: {one_call(10) / 10**8 * 1.5:.8f}, period: month}}"
    async with local_stack(policy(tmp_path, tight)) as stack, sdk(stack) as client:
        for _ in range(2):  # the repeat is decided again: neither 409 nor a replayed 402
            with pytest.raises(openai.APIStatusError) as caught:
                await create(client, "k-7", max_tokens=1000)
            assert caught.value.status_code == 402
            assert "x-cycles-replayed" not in caught.value.response.headers
        assert (await create(client, "k-8", max_tokens=10)).status_code == 200
    assert stack.fake.calls == 1


async def test_answer_over_the_cap_is_not_kept(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "MAX_STORED_BYTES", 100)
    async with (
        local_stack(policy(tmp_path, BUDGETS), store=store_url) as stack,
        sdk(stack) as client,
    ):
        await create(client, "k-9")
        again = await create(client, "k-9")
        row = await line(stack.ledger, "alpha", "tenant")
    assert "x-cycles-replayed" not in again.headers
    assert stack.fake.calls == 2
    assert row.spent == 2 * one_call(10)


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"Idempotency-Key": "x" * 256}, "1 to 255 characters"),
        ({"Idempotency-Key": "a", "X-Cycles-Idempotency-Key": "b"}, "differ"),
    ],
)
async def test_bad_idempotency_key_is_400_and_not_forwarded(
    tmp_path: Path, headers: dict[str, str], words: str
) -> None:
    async with (
        local_stack(policy(tmp_path, BUDGETS)) as stack,
        aiohttp.ClientSession() as session,
    ):
        status, _, body = await post(session, stack, chat("hi", 10), headers)
    assert status == 400
    assert words in body.decode() and b"invalid_idempotency_key" in body
    assert stack.fake.calls == 0


async def test_cycles_header_is_an_alias(tmp_path: Path) -> None:
    async with (
        local_stack(policy(tmp_path, BUDGETS)) as stack,
        aiohttp.ClientSession() as session,
    ):
        for _ in range(2):
            status, headers, _ = await post(
                session, stack, chat("hi", 10), {"X-Cycles-Idempotency-Key": "k-10"}
            )
            assert status == 200
    assert headers["X-Cycles-Replayed"] == "true"
    assert stack.fake.calls == 1


def test_record_survives_its_encoding() -> None:
    record = replays.Record(
        "h", 200, (("Content-Type", "application/json"), ("X-A", "a\nb")), b"{\n}"
    )
    assert replays.decode(replays.encode(record)) == record


async def test_memory_claims_and_answers_expire() -> None:
    now = [0.0]
    store = replays.MemoryReplays(clock=lambda: now[0])
    assert await store.claim("alpha", "d", replays.Record("h")) is None
    assert await store.claim("alpha", "d", replays.Record("h")) == replays.Record("h")
    assert await store.claim("beta", "d", replays.Record("h")) is None
    now[0] = replays.IN_FLIGHT_S + 1
    assert await store.claim("alpha", "d", replays.Record("h2")) is None
    answer = replays.Record("h2", 200, (), b"{}")
    await store.keep("alpha", "d", answer)
    now[0] += replays.WINDOW_S - 1
    assert await store.claim("alpha", "d", replays.Record("h2")) == answer
    now[0] += 2
    assert await store.claim("alpha", "d", replays.Record("h3")) is None


async def test_key_on_a_body_nested_too_deep_to_hash_is_400_and_frees_the_key(
    tmp_path: Path, store_url: str
) -> None:
    """orjson reads 1024 levels but writes 255: the request hash must not fail on such a body
    (it was a 500); the proxy refuses the body, and the key serves the next request."""
    body = chat(MESSAGES[0]["content"], max_tokens=5)
    deep = orjson.dumps(body)[:-1] + b', "metadata": ' + b"[" * 300 + b"]" * 300 + b"}"
    pol = policy(tmp_path, BUDGETS)
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as session:
        url = f"{stack.url}/v1/chat/completions"
        headers = {**SCOPE, "Idempotency-Key": "deep", "Content-Type": "application/json"}
        async with session.post(url, data=deep, headers=headers) as answer:
            assert answer.status == 400, await answer.text()
            assert (await answer.json())["error"]["code"] == "invalid_json"
        assert stack.fake.requests == []
        status, _, _ = await post(session, stack, body, {"Idempotency-Key": "deep"})
        assert status == 200


async def test_memory_answer_store_keeps_the_newest_within_its_entries_and_bytes() -> None:
    """Issue 14, item 5: memory:// held every keyed answer for 24 h (1,500 calls, 1,500
    answers). It keeps at most `max_entries` entries and `max_bytes` bytes, dropping the oldest;
    an answer larger than the whole store is not kept (its key is freed: a repeat runs again)."""
    store = replays.MemoryReplays(max_entries=3, max_bytes=10_000)
    answers = {}
    for i in range(5):
        digest = f"d{i}"
        assert await store.claim("alpha", digest, replays.Record(f"h{i}")) is None
        answers[digest] = replays.Record(f"h{i}", 200, (), b"x" * 1000)
        await store.keep("alpha", digest, answers[digest])
    assert len(store) == 3 and store.bytes <= 10_000
    for i in range(2, 5):
        assert await store.claim("alpha", f"d{i}", replays.Record(f"h{i}")) == answers[f"d{i}"]
    for i in range(2):  # the oldest two are gone: their keys run again
        assert await store.claim("alpha", f"d{i}", replays.Record(f"h{i}")) is None
        await store.release("alpha", f"d{i}")

    for i in range(5, 12):  # 4 KB answers: the bytes bind before the entries do
        await store.claim("alpha", f"d{i}", replays.Record(f"h{i}"))
        await store.keep("alpha", f"d{i}", replays.Record(f"h{i}", 200, (), b"y" * 4000))
        assert store.bytes <= 10_000
    assert len(store) == 2

    assert await store.claim("alpha", "huge", replays.Record("hh")) is None
    await store.keep("alpha", "huge", replays.Record("hh", 200, (), b"z" * 20_000))
    assert store.bytes <= 10_000
    assert await store.claim("alpha", "huge", replays.Record("hh")) is None


async def test_an_answer_dropped_from_the_memory_store_runs_and_is_charged_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its bound the memory store forgets the oldest answers: a retry of one of those is
    forwarded and charged again, a retry of a recent one is still replayed and charged nothing."""
    monkeypatch.setattr(replays, "MAX_ENTRIES", 3)
    async with local_stack(policy(tmp_path, BUDGETS)) as stack, sdk(stack) as client:
        for i in range(5):
            await create(client, f"k-{i}")
        row = await line(stack.ledger, "alpha", "tenant")
        assert (row.spent, row.reserved) == (5 * one_call(10), 0)
        recent = await create(client, "k-4")
        assert recent.headers["x-cycles-replayed"] == "true"
        assert await line(stack.ledger, "alpha", "tenant") == row
        oldest = await create(client, "k-0")
        assert "x-cycles-replayed" not in oldest.headers
        row = await line(stack.ledger, "alpha", "tenant")
    assert stack.fake.calls == 6
    assert (row.spent, row.reserved) == (6 * one_call(10), 0)


async def test_one_tenants_answers_never_push_out_another_tenants_answer_or_claim() -> None:
    """The memory store's bound was global: one tenant's 33 answers of 1 MiB dropped every
    other tenant's answers and its calls' claims (a retry then ran, and was charged, again).
    Each tenant's answers now push out only its own, and a claim is never dropped."""
    store = replays.MemoryReplays()
    done = replays.Record("h1", 200, (), b'{"ok":1}')
    assert await store.claim("alpha", "k-done", replays.Record("h1")) is None
    await store.keep("alpha", "k-done", done)
    assert await store.claim("alpha", "k-running", replays.Record("h2")) is None
    big = b"x" * (replay.MAX_STORED_BYTES - 4096)
    for i in range(33):
        assert await store.claim("mallory", f"m{i}", replays.Record("hm")) is None
        await store.keep("mallory", f"m{i}", replays.Record("hm", 200, (), big))
    assert await store.claim("alpha", "k-done", replays.Record("h1")) == done
    assert await store.claim("alpha", "k-running", replays.Record("h2")) == replays.Record("h2")
    assert await store.claim("mallory", "m32", replays.Record("hm")) is not None
    assert await store.claim("mallory", "m0", replays.Record("hm")) is None  # its own: dropped
    assert store.bytes <= replays.TENANT_BYTES + 4096


async def test_claims_are_never_dropped_and_a_key_past_the_bound_is_refused() -> None:
    """Claims (calls in flight) beyond the bound are not made room for by dropping another
    call's claim: the new key is refused, per tenant and in all."""
    store = replays.MemoryReplays(max_entries=2, max_claims=3, tenant_claims=2)
    for i in range(2):
        assert await store.claim("alpha", f"a{i}", replays.Record("h")) is None
    with pytest.raises(replays.ReplaysFull):
        await store.claim("alpha", "a2", replays.Record("h"))
    assert await store.claim("beta", "b0", replays.Record("h")) is None
    with pytest.raises(replays.ReplaysFull):
        await store.claim("gamma", "g0", replays.Record("h"))
    for i in range(3):  # answers past the answers' bound drop answers, never claims
        await store.claim("beta", "b0", replays.Record("h"))
        await store.keep("beta", f"b{i}", replays.Record("h", 200, (), b"{}"))
    for i in range(2):
        assert await store.claim("alpha", f"a{i}", replays.Record("h")) == replays.Record("h")
    await store.release("alpha", "a0")
    assert await store.claim("alpha", "a2", replays.Record("h")) is None


async def test_a_key_past_the_tenants_claims_is_503_and_reserves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its calls in flight holding every claim the memory store keeps for the tenant, a
    call with a new key is 503 `idempotency_store_full` before anything is reserved or sent;
    once the call in flight ends, the key is served."""
    monkeypatch.setattr(replays, "TENANT_CLAIMS", 1)
    fake = FakeUpstream(FakeSettings(latency=1.0))
    async with local_stack(policy(tmp_path, BUDGETS), fake=fake) as stack, sdk(stack) as client:
        first = asyncio.ensure_future(create(client, "k-1"))
        await eventually(lambda: fake.in_flight == 1, "the first call reaching the provider")
        before = await line(stack.ledger, "alpha", "tenant")
        with pytest.raises(openai.InternalServerError) as refused:
            await create(client, "k-2")
        assert await line(stack.ledger, "alpha", "tenant") == before
        assert fake.calls == 1
        await first
        await create(client, "k-2")
        row = await line(stack.ledger, "alpha", "tenant")
    assert refused.value.status_code == 503
    body = refused.value.body
    assert isinstance(body, dict) and body["code"] == "idempotency_store_full"
    assert fake.calls == 2
    assert (row.spent, row.reserved) == (2 * one_call(10), 0)
