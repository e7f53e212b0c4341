"""The unmodified openai SDK through the proxy: sync, async, streams, a 402 it does not retry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest
from support import chat_prompt_tokens, line, mini_cost, mini_reserved, policy, usd

from proxy.testing.local import local_stack

MESSAGES = [{"role": "user", "content": "Write a haiku about budgets."}]


def headers(tenant: str = "alpha", run: str = "r1") -> dict[str, str]:
    return {"X-Cycles-Tenant": tenant, "X-Cycles-Workflow": "haiku", "X-Cycles-Run": run}


def expected_cost(max_tokens: int) -> int:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    return mini_cost(chat_prompt_tokens(body), max_tokens)


def expected_reservation(max_tokens: int) -> int:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    return mini_reserved(chat_prompt_tokens(body), max_tokens)


async def test_sync_client_call_is_charged_exactly(tmp_path: Path, store_url: str) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol, store=store_url) as stack:
        client = openai.OpenAI(
            base_url=stack.url + "/v1", api_key="unused", default_headers=headers()
        )

        def call() -> openai.types.chat.ChatCompletion:
            with client:
                return client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=20
                )  # type: ignore[arg-type]

        completion = await asyncio.to_thread(call)
        assert completion.usage is not None and completion.usage.completion_tokens == 20
        assert completion.choices[0].message.content == " hello" * 20
        spent = (await line(stack.ledger, "alpha", "tenant")).spent
        assert spent == expected_cost(20)


async def test_async_client_and_its_raw_decision_headers(tmp_path: Path) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with (
        local_stack(pol) as stack,
        openai.AsyncOpenAI(
            base_url=stack.url + "/v1", api_key="unused", default_headers=headers()
        ) as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            max_tokens=5,  # type: ignore[arg-type]
        )
        assert raw.headers["x-cycles-decision"] == "ALLOW"
        assert raw.headers["x-cycles-remaining"].endswith(" USD")
        assert raw.parse().choices[0].message.content == " hello" * 5


async def test_stream_is_relayed_and_usage_committed(tmp_path: Path, store_url: str) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol, store=store_url) as stack:
        async with openai.AsyncOpenAI(
            base_url=stack.url + "/v1", api_key="unused", default_headers=headers()
        ) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                max_tokens=12,
                stream=True,  # type: ignore[arg-type]
            )
            chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == " hello" * 12
        # The client did not ask for usage, so the usage-only chunk was hidden from it.
        assert all(c.choices for c in chunks)
        assert all(c.usage is None for c in chunks)
        tenant = await line(stack.ledger, "alpha", "tenant")
        assert (tenant.spent, tenant.reserved) == (expected_cost(12), 0)


async def test_stream_keeps_the_usage_chunk_when_the_client_asked(tmp_path: Path) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol) as stack:
        async with openai.AsyncOpenAI(
            base_url=stack.url + "/v1", api_key="unused", default_headers=headers()
        ) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                max_tokens=4,
                stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


async def test_denial_raises_402_and_is_not_retried(tmp_path: Path) -> None:
    # Room for one reservation: the call's charge leaves too little for a second.
    pol = policy(tmp_path, f"run: {{limit: {usd(expected_reservation(20))}}}")
    sent: list[object] = []

    async def count(request: object) -> None:
        sent.append(request)

    async with local_stack(pol) as stack:
        http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [count]})
        async with openai.AsyncOpenAI(
            base_url=stack.url + "/v1",
            api_key="unused",
            default_headers=headers(),
            http_client=http,
        ) as client:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=20
            )  # type: ignore[arg-type]
            with pytest.raises(openai.APIStatusError) as raised:
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=20
                )  # type: ignore[arg-type]
        assert raised.value.status_code == 402
        body = raised.value.body
        assert isinstance(body, dict) and body["type"] == "budget_exceeded"
        assert len(sent) == 2, "the SDK retried a 402"
        assert stack.fake.calls == 1
        assert (await line(stack.ledger, "alpha", "run", "r1")).spent == expected_cost(20)
