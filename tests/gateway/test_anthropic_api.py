"""Anthropic's Messages API through the proxy with the real anthropic SDK: charged exactly what
the provider billed (cache writes and reads at their prices), whole or streamed; cut streams,
denials and bad input answered in Anthropic's error shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import pytest
from fields_support import billed_cost, shapes_policy
from support import line, settled

from proxy.gateway.context import API_KEYS
from proxy.testing.fake_upstream import WORD, FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

MODEL = "claude-sonnet-4"
HEADERS = {"X-Cycles-Tenant": "alpha", "X-Cycles-Run": "r1"}
MESSAGES: Any = [{"role": "user", "content": "Write a haiku about budgets."}]
SYSTEM: Any = [{"type": "text", "text": "You are terse."}]


def client(stack: Stack, **kwargs: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=stack.url, api_key="unused", default_headers=HEADERS, **kwargs
    )


async def test_message_is_charged_what_the_provider_billed_with_cache_prices(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(cached_tokens=5, cache_write_tokens=9))
    async with local_stack(shapes_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with client(stack) as sdk:
            answer = await sdk.messages.create(
                model=MODEL, max_tokens=20, system=SYSTEM, messages=MESSAGES
            )
        assert answer.content[0].type == "text" and answer.content[0].text == WORD * 20
        assert answer.usage.cache_read_input_tokens == 5
        assert answer.usage.cache_creation_input_tokens == 9
        billed = fake.billed[0]
        row = await settled(stack.ledger)
        assert (row.spent, row.reserved) == (billed_cost(billed), 0)
        path, headers, body = fake.requests[0]
        assert path == "/v1/messages" and body["max_tokens"] == 20
        assert headers["x-api-key"] == fake.settings.api_key
        assert "Authorization" not in headers and "anthropic-version" in headers


async def test_streamed_message_is_charged_from_message_start_and_delta(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(cached_tokens=3, cache_write_tokens=4))
    async with local_stack(shapes_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with client(stack) as sdk:
            async with sdk.messages.stream(model=MODEL, max_tokens=12, messages=MESSAGES) as stream:
                text = "".join([piece async for piece in stream.text_stream])
                final = await stream.get_final_message()
            raw = await sdk.messages.create(
                model=MODEL, max_tokens=6, messages=MESSAGES, stream=True
            )
            kinds = [event.type async for event in raw]
        assert text == WORD * 12 and final.usage.output_tokens == 12
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        row = await settled(stack.ledger)
        assert (row.spent, row.reserved) == (sum(billed_cost(b) for b in fake.billed), 0)


async def test_stream_cut_before_message_delta_is_charged_the_reservation(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(cut_after=2, chunks=10, chunk_delay=0.5))
    body = {"model": MODEL, "max_tokens": 40, "messages": MESSAGES, "stream": True}
    async with local_stack(shapes_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with (
            aiohttp.ClientSession() as http,
            http.post(stack.url + "/v1/messages", json=body, headers=HEADERS) as r,
        ):
            reserved = (await line(stack.ledger, "alpha", "tenant")).reserved
            raw = await r.read()
        assert b"message_delta" not in raw
        row = await settled(stack.ledger)
        # No usage arrived: the charge is what was reserved while the stream ran, which covers
        # what the provider billed for the whole generation.
        assert (row.spent, row.reserved) == (reserved, 0)
        assert fake.billed[0].completion_tokens == 40
        assert reserved >= billed_cost(fake.billed[0]) > 0


async def test_denied_message_is_402_billing_error_and_not_retried(tmp_path: Path) -> None:
    sent: list[object] = []

    async def count(request: object) -> None:
        sent.append(request)

    async with local_stack(shapes_policy(tmp_path, "run: {limit: 0.000001}")) as stack:
        http = anthropic.DefaultAsyncHttpxClient(event_hooks={"request": [count]})
        async with client(stack, http_client=http) as sdk:
            with pytest.raises(anthropic.APIStatusError) as raised:
                await sdk.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
        assert raised.value.status_code == 402
        body = raised.value.body
        assert isinstance(body, dict) and body["type"] == "error"
        assert body["error"]["type"] == "billing_error"
        assert body["error"]["code"] == "budget_exceeded"
        assert "run" in body["error"]["message"]
        assert len(sent) == 1, "the SDK retried a 402"
        assert stack.fake.calls == 0
        assert all(r.spent == r.reserved == 0 for r in await stack.ledger.balances("alpha"))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"messages": MESSAGES}, "'max_tokens' is required"),
        ({"max_tokens": 10, "messages": "hi"}, "'messages' must be a non-empty array"),
        ({"max_tokens": 10, "messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"max_tokens": 10, "messages": MESSAGES, "system": 5}, "'system' must be"),
        ({"max_tokens": "ten", "messages": MESSAGES}, "'max_tokens' must be an integer"),
    ],
)
async def test_bad_input_is_400_in_anthropic_shape_and_nothing_reserved(
    tmp_path: Path, body: dict[str, Any], words: str
) -> None:
    async with local_stack(shapes_policy(tmp_path)) as stack, aiohttp.ClientSession() as http:
        payload = {"model": MODEL, **body}
        async with http.post(stack.url + "/v1/messages", json=payload, headers=HEADERS) as r:
            assert r.status == 400
            answer = await r.json()
        assert answer["type"] == "error"
        assert answer["error"]["type"] == "invalid_request_error"
        assert words in answer["error"]["message"]
        assert stack.fake.calls == 0
        assert await stack.ledger.balances("alpha") == []


async def test_gateway_takes_the_tenant_key_from_x_api_key(tmp_path: Path) -> None:
    async with local_stack(shapes_policy(tmp_path, gateway=True), sweep_every=None) as stack:
        plain, _ = await stack.app[API_KEYS].create("alpha")
        async with anthropic.AsyncAnthropic(base_url=stack.url, api_key=plain) as sdk:
            answer = await sdk.messages.create(model=MODEL, max_tokens=4, messages=MESSAGES)
            assert answer.usage.output_tokens == 4
        async with anthropic.AsyncAnthropic(base_url=stack.url, api_key="ck-wrong") as sdk:
            with pytest.raises(anthropic.AuthenticationError) as raised:
                await sdk.messages.create(model=MODEL, max_tokens=4, messages=MESSAGES)
        body = raised.value.body
        assert isinstance(body, dict) and body["error"]["type"] == "authentication_error"
        row = await settled(stack.ledger)
        assert (row.spent, row.reserved) == (billed_cost(stack.fake.billed[0]), 0)
