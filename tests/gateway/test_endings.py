"""How a call ends decides what it is charged. Once its request reached the provider, a call that
gets no answer (a timeout, a reset, the proxy giving up) is charged at least its reservation, as
the provider may bill the whole generation; only a call that never left (no connection) or an
error status before any output releases. A stream that reports no usage, from a model that may
reason without streaming it, is charged its reservation too.

Every test reads each call's reservation and charge from the ledger's own record and checks,
call by call, billed ≤ charged ≤ reserved, with "billed" what the fake provider billed, priced by
the tests' own formula."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from breadth_support import breadth_policy
from breadth_support import cost as breadth_cost
from conftest import POLICIES, free_port
from support import chat, line, mini_cost, policy

from proxy.app import STORES, AppConfig, StoreConfig, build_app
from proxy.core import tasks
from proxy.core.errors import PolicyError
from proxy.core.types import ReservationSettings
from proxy.gateway import upkeep
from proxy.policy import load_policy
from proxy.policy.loader import with_upstream_override
from proxy.policy.runtime import Policy
from proxy.store.ledger.base import Ledger, ReservationRecord
from proxy.store.open import Stores, open_store
from proxy.testing.fake_openai import Billed
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack, serving

TENANT = {"X-Cycles-Tenant": "alpha"}
SETTINGS = ReservationSettings()
LIMIT = "0.05"
"""USD: room for every call a test makes, and the bound no tenant's spend may pass."""


def with_timeouts(pol: Policy, **seconds: float) -> Policy:
    return dataclasses.replace(pol, timeouts=dataclasses.replace(pol.timeouts, **seconds))


def mini_policy(tmp_path: Path, **timeouts: float) -> Policy:
    pol = policy(tmp_path, f"tenant: {{limit: {LIMIT}, period: month}}")
    return with_timeouts(pol, **timeouts)


async def until(condition: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    """Poll `condition` until it holds; fail after 10 s naming `what`."""
    deadline = time.monotonic() + 10
    while True:
        held = condition()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within 10 s")
        await asyncio.sleep(0.02)


async def reservations(stores: Stores, tenant: str = "alpha") -> list[ReservationRecord]:
    """Every reservation the tenant's audit trail names, as the ledger keeps it: what it
    reserved (`amounts`), its state, and what its commit charged (`actual`)."""
    trail = await stores.tenants.audit(tenant)
    ids = [
        e.fields["reservation"] for e in trail if e.kind == "reserve" and "reservation" in e.fields
    ]
    records = [await stores.ledger.reservation(tenant, rid) for rid in ids]
    return [r for r in records if r is not None]


async def settled_records(stores: Stores, calls: int) -> list[ReservationRecord]:
    """The `calls` reservations, once none is open any more."""
    found: list[ReservationRecord] = []

    async def all_settled() -> bool:
        found[:] = await reservations(stores)
        return len(found) == calls and all(r.state != "OPEN" for r in found)

    await until(all_settled, f"{calls} settled reservations")
    return found


def assert_bounded(billed: list[int], records: list[ReservationRecord]) -> None:
    """billed ≤ charged ≤ reserved for every call: each charge against its own reservation, and
    the bills matched to the charges in order of size (any matching exists only if this one
    does)."""
    assert len(billed) == len(records)
    for record in records:
        assert record.state == "COMMITTED", record
        assert record.actual is not None
        assert record.actual["USD"] <= record.amounts["USD"], record
    charged = sorted(record.actual["USD"] for record in records if record.actual is not None)
    assert all(b <= c for b, c in zip(sorted(billed), charged, strict=True)), (billed, charged)


async def assert_within_limit(ledger: Ledger) -> None:
    row = await line(ledger, "alpha", "tenant")
    assert row.reserved == 0
    assert row.spent <= int(Decimal(LIMIT) * 10**8)


def mini_billed(fake: FakeUpstream) -> list[int]:
    return [mini_cost(b.prompt_tokens, b.completion_tokens) for b in fake.billed]


async def post_all(
    url: str, bodies: list[dict[str, Any]], path: str = "/v1/chat/completions"
) -> list[tuple[int, dict[str, Any] | bytes]]:
    """Send the bodies at once; each answer's status and JSON (or raw bytes for a stream)."""
    async with aiohttp.ClientSession(headers=TENANT) as session:

        async def one(body: dict[str, Any]) -> tuple[int, dict[str, Any] | bytes]:
            async with session.post(url + path, json=body) as r:
                if r.content_type == "application/json":
                    return r.status, await r.json()
                return r.status, await r.read()

        return await asyncio.gather(*(one(body) for body in bodies))


# -- a whole answer comes only when its generation is done ----------------------------------------


@pytest.mark.parametrize("which", ["first_byte", "chunk_idle"])
async def test_slow_whole_answers_are_not_cut_by_stream_timeouts_and_are_charged_their_usage(
    tmp_path: Path, store_url: str, which: str
) -> None:
    """Issue 13's repro: a provider that answers after 1.5 s, first_byte (or chunk_idle) 1 s,
    three calls of max_tokens 4000. They were 502, released, and billed 3 × 4000 tokens; a whole
    answer now waits for timeouts.non_stream_answer and is charged what the provider billed."""
    fake = FakeUpstream(FakeSettings(latency=1.5))
    pol = mini_policy(tmp_path, **{which: 1.0})
    async with local_stack(pol, store=store_url, fake=fake) as stack:
        answers = await post_all(stack.url, [chat(max_tokens=4000)] * 3)
        assert [status for status, _ in answers] == [200] * 3, answers
        records = await settled_records(stack.stores, 3)
        assert [b.completion_tokens for b in fake.billed] == [4000] * 3
        assert_bounded(mini_billed(fake), records)
        row = await line(stack.ledger, "alpha", "tenant")
        assert row.spent == sum(mini_billed(fake))
        await assert_within_limit(stack.ledger)


async def test_a_whole_answer_later_than_non_stream_answer_is_504_and_charged_its_reservation(
    tmp_path: Path, store_url: str
) -> None:
    """The proxy gives up at timeouts.non_stream_answer, but the provider finishes and bills the
    generation: each call is charged its reservation, never released, and told so."""
    fake = FakeUpstream(FakeSettings(latency=1.5))
    pol = mini_policy(tmp_path, first_byte=1.0, non_stream_answer=1.0)
    async with local_stack(pol, store=store_url, fake=fake) as stack:
        answers = await post_all(stack.url, [chat(max_tokens=4000)] * 3)
        for status, answer in answers:
            assert status == 504
            assert isinstance(answer, dict)
            error = answer["error"]
            assert error["code"] == "upstream_timeout"
            assert "did not answer within 1 s (timeouts.non_stream_answer)" in error["message"]
            assert "charged its reservation" in error["message"]
            assert "Nothing was charged" not in error["message"]
        await until(lambda: len(fake.billed) == 3, "the provider billing the three generations")
        records = await settled_records(stack.stores, 3)
        assert all(r.actual == r.amounts for r in records)
        assert_bounded(mini_billed(fake), records)
        await assert_within_limit(stack.ledger)


async def test_a_stream_whose_headers_come_after_first_byte_is_504_and_charged_its_reservation(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=1.5))
    pol = mini_policy(tmp_path, first_byte=1.0)
    async with local_stack(pol, store=store_url, fake=fake) as stack:
        answers = await post_all(stack.url, [chat(max_tokens=4000, stream=True)] * 2)
        for status, answer in answers:
            assert status == 504
            assert isinstance(answer, dict)
            assert "within 1 s (timeouts.first_byte)" in answer["error"]["message"]
        await until(lambda: len(fake.billed) == 2, "the provider billing both streams")
        records = await settled_records(stack.stores, 2)
        assert all(r.actual == r.amounts for r in records)
        assert_bounded(mini_billed(fake), records)
        await assert_within_limit(stack.ledger)


# -- the connection breaks after the request was written ------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_connection_reset_after_the_request_was_sent_is_charged_its_reservation(
    tmp_path: Path, store_url: str, stream: bool
) -> None:
    """The provider read the request and billed it, then the connection went down without an
    answer: 502, charged the reservation."""
    fake = FakeUpstream(FakeSettings(hang_up=True))
    async with local_stack(mini_policy(tmp_path), store=store_url, fake=fake) as stack:
        answers = await post_all(stack.url, [chat(max_tokens=4000, stream=stream)] * 2)
        for status, answer in answers:
            assert status == 502
            assert isinstance(answer, dict)
            message = answer["error"]["message"]
            assert "the connection was lost after the request was sent" in message
            assert "charged its reservation" in message
        records = await settled_records(stack.stores, 2)
        assert len(fake.billed) == 2
        assert all(r.actual == r.amounts for r in records)
        assert_bounded(mini_billed(fake), records)
        await assert_within_limit(stack.ledger)


async def test_an_upstream_that_cannot_be_reached_is_502_and_nothing_is_charged(
    tmp_path: Path, store_url: str
) -> None:
    """No connection, so the request never left: the reservation is released."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    pol = with_upstream_override(mini_policy(tmp_path), dead)
    app = build_app(AppConfig(pol, StoreConfig(store_url), provider_keys={"openai": "sk-unused"}))
    async with serving(app) as url:
        answers = await post_all(url, [chat(max_tokens=4000)])
        records = await reservations(app[STORES])
        row = await line(app[STORES].ledger, "alpha", "tenant")
    [(status, answer)] = answers
    assert status == 502
    assert isinstance(answer, dict)
    assert "nothing was charged" in answer["error"]["message"]
    assert [r.state for r in records] == ["RELEASED"]
    assert (row.spent, row.reserved) == (0, 0)


async def test_a_call_the_proxy_gives_up_on_is_charged_its_reservation(
    tmp_path: Path, store_url: str
) -> None:
    """Stopping, the proxy cancels the calls still waiting for their provider after the drain:
    each is charged what it holds before the ledger closes, while the provider bills on."""
    # Half the limit generated: a call that ran to its answer would be charged less than held.
    fake = FakeUpstream(FakeSettings(latency=1.5, completion_fraction=0.5))
    async with local_stack(mini_policy(tmp_path), store=store_url, fake=fake) as stack:
        call = asyncio.ensure_future(post_all(stack.url, [chat(max_tokens=4000)]))
        await until(lambda: fake.in_flight == 1, "the call reaching the provider")
        [forward] = [t for t in tasks.running() if t.get_name().startswith("call ")]
        forward.cancel()
        await asyncio.wait([forward])
        [record] = await settled_records(stack.stores, 1)
        assert record.actual == record.amounts
        await until(lambda: len(fake.billed) == 1, "the provider billing the generation")
        assert_bounded(mini_billed(fake), [record])
        await assert_within_limit(stack.ledger)
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)


async def test_a_proxy_that_stops_charges_the_calls_it_gives_up_before_closing_the_ledger(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At shutdown, calls still waiting for their provider once the drain is over are given up,
    and charged their reservation before the ledger closes, never left open or released."""
    monkeypatch.setattr(upkeep, "SETTLE_ON_STOP", 0.2)
    # Half the limit generated: a call that ran to its answer would be charged less than held.
    fake = FakeUpstream(FakeSettings(latency=1.5, completion_fraction=0.5))
    async with serving(fake.app()) as fake_url:  # the provider outlives the proxy
        pol = with_upstream_override(mini_policy(tmp_path), fake_url + "/v1")
        keys = {"openai": fake.settings.api_key}
        app = build_app(AppConfig(pol, StoreConfig(store_url), provider_keys=keys))
        # As `serve` stops: requests in flight get a short drain, then the app's cleanup runs.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        call = asyncio.ensure_future(post_all(f"http://{host}:{port}", [chat(max_tokens=4000)]))
        await until(lambda: fake.in_flight == 1, "the call reaching the provider")
        stopped = app[STORES]
        await runner.cleanup()
        await asyncio.gather(call, return_exceptions=True)
        stores = stopped if store_url == "memory://" else open_store(store_url, SETTINGS)
        try:
            [record] = await reservations(stores)
            assert record.state == "COMMITTED" and record.actual == record.amounts
            await until(lambda: len(fake.billed) == 1, "the provider billing the generation")
            assert_bounded(mini_billed(fake), [record])
            await assert_within_limit(stores.ledger)
        finally:
            if stores is not stopped:
                await stores.close()


async def test_an_error_answer_whose_body_is_cut_by_a_stop_is_released(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider's error status is not billed, whatever becomes of its body: a proxy that
    stops while the body is still coming releases the call, never leaves it held (to be
    charged at expiry) or charged."""
    monkeypatch.setattr(upkeep, "SETTLE_ON_STOP", 0.2)
    answered = asyncio.Event()

    async def overloaded(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=529, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"error": {"message": "overloaded", ')
        answered.set()
        await asyncio.sleep(2)
        return response

    slow = web.Application()
    slow.router.add_post("/v1/chat/completions", overloaded)
    async with serving(slow) as slow_url:
        pol = with_upstream_override(mini_policy(tmp_path), slow_url + "/v1")
        app = build_app(AppConfig(pol, StoreConfig(store_url), provider_keys={"openai": "k"}))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        call = asyncio.ensure_future(post_all(f"http://{host}:{port}", [chat(max_tokens=4000)]))
        await asyncio.wait_for(answered.wait(), 10)
        stopped = app[STORES]
        await runner.cleanup()
        await asyncio.gather(call, return_exceptions=True)
        stores = stopped if store_url == "memory://" else open_store(store_url, SETTINGS)
        try:
            [record] = await reservations(stores)
            assert record.state == "RELEASED", record
            [row] = await stores.ledger.balances("alpha")
            assert (row.spent, row.reserved) == (0, 0), row
        finally:
            if stores is not stopped:
                await stores.close()


# -- hidden reasoning -----------------------------------------------------------------------------

NO_USAGE = "vllm: {base_url: 'http://vllm.internal:8000/v1', include_usage: false}"
"""An upstream that refuses stream_options, so its streams report no usage."""


def reasoning_policy(tmp_path: Path, models: str = "") -> Policy:
    return breadth_policy(
        tmp_path,
        budgets=f"tenant: {{limit: {LIMIT}, period: month}}",
        upstreams=NO_USAGE,
        routes='- {model: "o3-mini", upstream: vllm}\n- {model: "llama-*", upstream: vllm}',
        models=models,
    )


def breadth_billed(fake: FakeUpstream, model: str) -> list[int]:
    def one(b: Billed) -> int:
        return breadth_cost(model, input=b.prompt_tokens, output=b.completion_tokens)

    return [one(b) for b in fake.billed]


async def test_a_reasoning_model_stream_without_usage_is_charged_its_reservation(
    tmp_path: Path, store_url: str
) -> None:
    """Issue 13's repro: o3-mini on an include_usage: false upstream, max_completion_tokens
    4000; the provider billed 8 + 4000 tokens, 3000 of them reasoning, and streamed 1000. The
    visible text was charged (25 %); the reservation is."""
    fake = FakeUpstream(FakeSettings(completion_fraction=0.25, reasoning_tokens=3000))
    body = {
        "model": "o3-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 4000,
        "stream": True,
    }
    async with local_stack(reasoning_policy(tmp_path), store=store_url, fake=fake) as stack:
        [(status, raw)] = await post_all(stack.url, [body])
        assert status == 200 and isinstance(raw, bytes) and raw.rstrip().endswith(b"[DONE]")
        assert b'"usage"' not in raw
        [billed] = fake.billed
        assert (billed.prompt_tokens, billed.completion_tokens) == (8, 4000)
        assert billed.reasoning_tokens == 3000
        [record] = await settled_records(stack.stores, 1)
        assert record.actual == record.amounts
        assert_bounded(breadth_billed(fake, "o3-mini"), [record])
        await assert_within_limit(stack.ledger)


@pytest.mark.parametrize("reasoning", [True, False])
async def test_the_policy_s_reasoning_flag_decides_a_stream_without_usage(
    tmp_path: Path, store_url: str, reasoning: bool
) -> None:
    """A self-hosted model marked `reasoning: true` is charged its reservation; marked false
    (it streams all its reasoning), the counted text (and its prompt as reserved, at the price
    of a cache write: no report says the prompt was not written)."""
    flag = "true" if reasoning else "false"
    models = f"llama-3.1-8b: {{input: 0.10, output: 0.20, reasoning: {flag}}}"
    fake = FakeUpstream(FakeSettings(completion_fraction=0.25))
    body = {
        "model": "llama-3.1-8b",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 400,
        "stream": True,
    }
    pol = reasoning_policy(tmp_path, models)
    async with local_stack(pol, store=store_url, fake=fake) as stack:
        [(status, _)] = await post_all(stack.url, [body])
        assert status == 200
        [record] = await settled_records(stack.stores, 1)
        billed = breadth_billed(fake, "llama-3.1-8b")
        assert_bounded(billed, [record])
        assert record.actual is not None
        [bill] = fake.billed
        counted = breadth_cost(
            "llama-3.1-8b", cache_write=bill.prompt_tokens, output=bill.completion_tokens
        )
        assert record.actual["USD"] == (record.amounts["USD"] if reasoning else counted)


# -- the policy: the reservation outlives the wait; which models reason ----------------------------


def check(policy_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--policy", str(policy_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_refuses_a_non_stream_answer_the_reservation_would_not_outlive(
    tmp_path: Path,
) -> None:
    text = (POLICIES / "example.yaml").read_text()
    assert "  non_stream_answer: 600 " in text
    path = tmp_path / "slow.yaml"
    path.write_text(text.replace("  non_stream_answer: 600 ", "  non_stream_answer: 1800"))
    line_no = next(
        i for i, row in enumerate(path.read_text().splitlines(), 1) if "cap_seconds:" in row
    )
    result = check(path)
    assert result.returncode == 2
    expected = f"slow.yaml:{line_no}: reservations.cap_seconds: reservations.cap_seconds (1800) "
    assert expected in result.stderr
    assert "must exceed timeouts.connect + timeouts.non_stream_answer (10 + 1800 = 1810)" in (
        result.stderr
    )
    assert "raise cap_seconds or lower the timeout" in result.stderr


def test_a_route_s_non_stream_answer_must_fit_the_reservation_too(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    mini_policy(tmp_path)
    text = path.read_text().replace(
        "upstream: openai}", "upstream: openai, timeouts: {non_stream_answer: 2400}}  # <-"
    )
    path.write_text(text)
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert "routes[0].timeouts.non_stream_answer: reservations.cap_seconds (1800) must exceed " in (
        str(refused.value)
    )
    path.write_text(text + "reservations: {cap_seconds: 2411, tombstone_seconds: 7200}\n")
    slow = load_policy(path).timeouts_for("gpt-4o")
    assert (slow.non_stream_answer, slow.first_byte) == (2400, 120)


def test_check_shows_the_answer_timeout_and_the_models_that_reason() -> None:
    result = check(POLICIES / "example.yaml")
    assert result.returncode == 0, result.stderr
    assert "non_stream_answer 600" in result.stdout
    [o3] = [row for row in result.stdout.splitlines() if row.strip().startswith("o3-mini ")]
    assert "reasoning" in o3
    [mini] = [row for row in result.stdout.splitlines() if row.strip().startswith("gpt-4o-mini ")]
    assert "reasoning" not in mini


def test_reasoning_defaults_by_name_and_the_policy_overrides_it(tmp_path: Path) -> None:
    pol = reasoning_policy(
        tmp_path,
        "llama-3.1-8b: {input: 0.10, output: 0.20, reasoning: true}\n"
        "claude-sonnet-4: {input: 3, output: 15}\n"
        "o4-mini: {input: 1.10, output: 4.40, reasoning: false}",
    )
    flags = {name: price.reasoning for name, price in pol.models.items()}
    assert flags["o3-mini"] is True
    assert flags["o4-mini"] is False
    assert flags["llama-3.1-8b"] is True
    assert flags["gpt-4o-mini"] is None and flags["claude-sonnet-4"] is None
