"""End-user budgets through the proxy (issue 18), with the real openai and anthropic SDKs: a
new user's 200 concurrent first calls against a budget that fits 5 get exactly 5 through; the user
comes from X-Cycles-User, else the body (`user`, `safety_identifier`, `metadata.user_id`), whose
`user` goes upstream as sent; users of two tenants that share an id are apart; and a user's own
quotas hold."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from fields_support import shapes_policy
from ledger_support import every_row
from support import chat_prompt_tokens, eventually, mini_cost, policy, usd

from proxy.store.ledger.base import BalanceRow, Ledger
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

MESSAGES: Any = [{"role": "user", "content": "Write a haiku about budgets."}]
TOKENS = 20
COST = mini_cost(chat_prompt_tokens({"model": "gpt-4o-mini", "messages": MESSAGES}), TOKENS)
"""What one call costs and, with cache writes priced at input, reserves (support.policy)."""


def sdk(stack: Stack, tenant: str = "alpha", **headers: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=stack.url + "/v1",
        api_key="unused",
        max_retries=0,
        default_headers={"X-Cycles-Tenant": tenant, **headers},
    )


async def ask(client: openai.AsyncOpenAI, **extra: Any) -> Any:
    return await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=TOKENS, **extra
    )


async def users(ledger: Ledger, tenant: str = "alpha") -> dict[str, tuple[int, int]]:
    """value -> (spent, reserved) of the tenant's end users' USD lines, once none is reserved."""

    async def settled() -> dict[str, tuple[int, int]] | None:
        rows: list[BalanceRow] = await every_row(ledger, tenant)
        mine = {r.value: (r.spent, r.reserved) for r in rows if r.level == "user"}
        return None if any(reserved for _, reserved in mine.values()) else mine

    return await eventually(settled, f"{tenant}'s end users' lines settling")


async def test_200_concurrent_first_calls_of_a_new_user_get_exactly_the_5_that_fit(
    tmp_path: Path, store_url: str
) -> None:
    budgets = (
        f"tenant: {{limit: 50, period: month}}\nuser: {{limit: '{usd(5 * COST)}', period: day}}"
    )
    pol = policy(tmp_path, budgets, writes_at_input=True)
    async with local_stack(pol, store=store_url) as stack, sdk(stack) as client:
        answers = await asyncio.gather(
            *(ask(client, user="new-user") for _ in range(200)), return_exceptions=True
        )
        refused = [a for a in answers if isinstance(a, openai.APIStatusError)]
        assert len(answers) - len(refused) == 5
        assert {a.status_code for a in refused} == {402}
        assert await users(stack.ledger) == {"new-user": (5 * COST, 0)}
        assert stack.fake.calls == 5


async def test_the_user_comes_from_the_header_else_the_body_which_goes_up_unchanged(
    tmp_path: Path, store_url: str
) -> None:
    budgets = "tenant: {limit: 50, period: month}\nuser: {limit: 1, period: day}"
    async with local_stack(policy(tmp_path, budgets), store=store_url) as stack:
        async with sdk(stack) as client:
            await ask(client, user="Alice")
            await ask(client, safety_identifier="bob")
            await ask(client, user="carol", safety_identifier="bob")
        async with sdk(stack, **{"X-Cycles-User": "Dave"}) as client:
            await ask(client, user="alice")
        assert await users(stack.ledger) == {
            "alice": (COST, 0),
            "bob": (COST, 0),
            "carol": (COST, 0),
            "dave": (COST, 0),
        }
        sent = [body.get("user") for _, _, body in stack.fake.requests]
        assert sent == ["Alice", None, "carol", "alice"]


async def test_the_anthropic_sdks_metadata_user_id_is_the_user(
    tmp_path: Path, store_url: str
) -> None:
    budgets = "tenant: {limit: 50, period: month}\n      user: {limit: 1, period: day}"
    async with local_stack(shapes_policy(tmp_path, budgets), store=store_url) as stack:
        async with anthropic.AsyncAnthropic(
            base_url=stack.url, api_key="unused", default_headers={"X-Cycles-Tenant": "alpha"}
        ) as client:
            await client.messages.create(
                model="claude-sonnet-4",
                max_tokens=10,
                messages=MESSAGES,
                metadata={"user_id": "user-42"},
            )
        spent = await users(stack.ledger)
        assert list(spent) == ["user-42"] and spent["user-42"][0] > 0
        assert stack.fake.requests[0][2]["metadata"] == {"user_id": "user-42"}


async def test_users_of_two_tenants_that_share_an_id_spend_their_own_budgets(
    tmp_path: Path, store_url: str
) -> None:
    budgets = (
        f"tenant: {{limit: 50, period: month}}\nuser: {{limit: '{usd(2 * COST)}', period: day}}"
    )
    async with local_stack(
        policy(tmp_path, budgets, writes_at_input=True), store=store_url
    ) as stack:
        async with sdk(stack, "alpha") as alpha, sdk(stack, "beta") as beta:
            for _ in range(2):
                await ask(alpha, user="shared")
            with pytest.raises(openai.APIStatusError) as denied:
                await ask(alpha, user="shared")
            assert denied.value.status_code == 402 and "user 'shared'" in denied.value.message
            for _ in range(2):
                await ask(beta, user="shared")
        assert await users(stack.ledger, "alpha") == {"shared": (2 * COST, 0)}
        assert await users(stack.ledger, "beta") == {"shared": (2 * COST, 0)}


async def test_each_user_has_its_own_request_rate(tmp_path: Path, store_url: str) -> None:
    plan = "quotas: {requests_per_minute: {tenant: 100, user: 2}}"
    budgets = "tenant: {limit: 50, period: month}"
    async with local_stack(policy(tmp_path, budgets, plan=plan), store=store_url) as stack:
        async with sdk(stack) as client:
            for _ in range(2):
                await ask(client, user="u1")
            with pytest.raises(openai.RateLimitError) as limited:
                await ask(client, user="u1")
            body: Any = limited.value.body
            assert (body["type"], body["code"]) == ("quota_exceeded", "requests_per_minute")
            assert "More than 2 calls a minute on user 'u1'" in limited.value.message
            await ask(client, user="u2")
        assert stack.fake.calls == 3


async def test_each_user_has_its_own_calls_in_flight(tmp_path: Path, store_url: str) -> None:
    plan = "quotas: {concurrent_requests: {tenant: 10, user: 1}}"
    budgets = "tenant: {limit: 50, period: month}"
    fake = FakeUpstream(FakeSettings(latency=0.5))
    pol = policy(tmp_path, budgets, plan=plan)
    async with local_stack(pol, store=store_url, fake=fake) as stack, sdk(stack) as client:
        answers = await asyncio.gather(
            ask(client, user="u1"),
            ask(client, user="u1"),
            ask(client, user="u2"),
            return_exceptions=True,
        )
        refused = [a for a in answers if isinstance(a, openai.RateLimitError)]
        assert len(refused) == 1 and "concurrent_requests" in str(refused[0].body)
        assert "Too many calls in flight on user 'u1'" in refused[0].message
        assert stack.fake.calls == 2
