"""Budgets through the proxy: concurrency, isolation, the scope hierarchy, decisions' headers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import ALL_STORES
from support import (
    admits_exactly,
    chat,
    chat_prompt_tokens,
    line,
    mini_cost,
    mini_reserved,
    policy,
    usd,
)

from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack


async def post(
    session: aiohttp.ClientSession, stack: Stack, body: dict[str, Any], **headers: str
) -> tuple[int, dict[str, str], dict[str, Any]]:
    hdrs = {"X-Cycles-" + k.capitalize(): v for k, v in headers.items()}
    async with session.post(f"{stack.url}/v1/chat/completions", json=body, headers=hdrs) as r:
        return r.status, dict(r.headers), orjson.loads(await r.read())


def estimate_units(body: dict[str, Any]) -> int:
    """What a call reserves (its prompt at the cache-write price OpenAI may bill it at)."""
    return mini_reserved(chat_prompt_tokens(body), body["max_tokens"])


def charged_units(body: dict[str, Any]) -> int:
    """What a call the fake bills in full, without cache writes, is charged."""
    return mini_cost(chat_prompt_tokens(body), body["max_tokens"])


@pytest.mark.parametrize("store_url", ALL_STORES, indirect=True)
async def test_exactly_ten_of_200_concurrent_calls_are_forwarded(
    tmp_path: Path, store_url: str
) -> None:
    body = chat()
    cost, reserved = charged_units(body), estimate_units(body)
    assert admits_exactly(10, reserved, cost)
    pol = policy(tmp_path, f"tenant: {{limit: {usd(10 * reserved)}, period: month}}")
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as session:
        results = await asyncio.gather(
            *(post(session, stack, body, tenant="alpha") for _ in range(200))
        )
        statuses = [status for status, _, _ in results]
        assert statuses.count(200) == 10
        assert statuses.count(402) == 190
        assert stack.fake.calls == 10
        billed = sum(mini_cost(b.prompt_tokens, b.completion_tokens) for b in stack.fake.billed)
        assert billed == 10 * cost
        tenant = await line(stack.ledger, "alpha", "tenant")
        assert (tenant.spent, tenant.reserved) == (10 * cost, 0)


async def test_other_tenants_unaffected_while_one_is_exhausted(
    tmp_path: Path, store_url: str
) -> None:
    body = chat()
    cost, reserved = charged_units(body), estimate_units(body)
    assert admits_exactly(3, reserved, cost)
    pol = policy(tmp_path, f"tenant: {{limit: {usd(3 * reserved)}, period: month}}")
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as session:
        for _ in range(3):
            assert (await post(session, stack, body, tenant="alpha"))[0] == 200
        assert (await post(session, stack, body, tenant="alpha"))[0] == 402
        results = await asyncio.gather(
            *(post(session, stack, body, tenant="beta") for _ in range(3))
        )
        assert [status for status, _, _ in results] == [200, 200, 200]
        assert (await line(stack.ledger, "beta", "tenant")).spent == 3 * cost
        assert (await line(stack.ledger, "alpha", "tenant")).spent == 3 * cost


async def test_run_budget_denies_while_tenant_and_workflow_have_room(
    tmp_path: Path, store_url: str
) -> None:
    body = chat()
    cost, reserved = charged_units(body), estimate_units(body)
    assert admits_exactly(2, reserved, cost)
    budgets = f"""
tenant: {{limit: 50, period: month}}
workflow: {{limit: 20, period: month}}
run: {{limit: {usd(2 * reserved)}}}
"""
    pol = policy(tmp_path, budgets)
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as session:
        scope = {"tenant": "alpha", "workflow": "triage", "run": "r-7"}
        for _ in range(2):
            assert (await post(session, stack, body, **scope))[0] == 200
        status, headers, error = await post(session, stack, body, **scope)
        assert status == 402
        assert headers["x-should-retry"] == "false"
        assert error["error"]["type"] == "budget_exceeded"
        assert "run 'r-7'" in error["error"]["message"]
        assert (await line(stack.ledger, "alpha", "run", "r-7")).spent == 2 * cost
        assert (await line(stack.ledger, "alpha", "workflow", "triage")).spent == 2 * cost
        # Another run of the same workflow still goes through.
        assert (await post(session, stack, body, tenant="alpha", workflow="triage", run="r-8"))[
            0
        ] == 200


async def test_workflow_budget_is_shared_whatever_agent_is_named(tmp_path: Path) -> None:
    body = chat()
    cost, reserved = charged_units(body), estimate_units(body)
    assert admits_exactly(2, reserved, cost)
    pol = policy(tmp_path, f"workflow: {{limit: {usd(2 * reserved)}, period: month}}")
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        assert (await post(session, stack, body, tenant="alpha", workflow="triage", agent="a"))[
            0
        ] == 200
        assert (await post(session, stack, body, tenant="alpha", workflow="triage"))[0] == 200
        assert (await post(session, stack, body, tenant="alpha", workflow="triage", agent="b"))[
            0
        ] == 402


async def test_allow_carries_decision_and_tightest_remaining(tmp_path: Path) -> None:
    body = chat()
    reserved = estimate_units(body)
    budgets = f"""
tenant: {{limit: 50, period: month}}
run: {{limit: {usd(3 * reserved)}}}
"""
    pol = policy(tmp_path, budgets)
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        status, headers, _ = await post(session, stack, body, tenant="alpha", run="r1")
        assert status == 200
        assert headers["X-Cycles-Decision"] == "ALLOW"
        # The header shows the tightest scope right after the reservation: 2 reservations left.
        expected = f"{(2 * reserved) // 100 / 10**6:.6f} USD"
        assert headers["X-Cycles-Remaining"] == expected


async def test_spend_above_estimate_is_charged_in_full(tmp_path: Path, store_url: str) -> None:
    """The ledger never under-records: what the provider reports is charged even above the
    reservation (here the fake ignores the limit and bills 3x the completion)."""
    body = chat(max_tokens=10)
    fake = FakeUpstream(FakeSettings(completion_fraction=3.0))
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with (
        local_stack(pol, store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as session,
    ):
        assert (await post(session, stack, body, tenant="alpha"))[0] == 200
        tenant = await line(stack.ledger, "alpha", "tenant")
        assert tenant.spent == mini_cost(chat_prompt_tokens(body), 30)
        assert tenant.reserved == 0


@pytest.mark.parametrize("endpoint", ["completions", "embeddings"])
async def test_completions_and_embeddings_are_budgeted(tmp_path: Path, endpoint: str) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    body: dict[str, Any]
    if endpoint == "completions":
        body = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 7}
    else:
        body = {"model": "text-embedding-3-small", "input": ["one", "two"]}
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        async with session.post(
            f"{stack.url}/v1/{endpoint}", json=body, headers={"X-Cycles-Tenant": "alpha"}
        ) as r:
            assert r.status == 200, await r.text()
        billed = stack.fake.billed[0]
        price = stack.policy.models[body["model"]]
        expected = -(
            -(billed.prompt_tokens * price.input + billed.completion_tokens * price.output) // 10**6
        )
        tenant = await line(stack.ledger, "alpha", "tenant")
        assert (tenant.spent, tenant.reserved) == (expected, 0)
        assert expected > 0
