"""The OpenAI Responses API through the proxy with the real openai SDK: charged exactly what the
provider billed, whole or streamed; cut streams, denials, bad input and stored state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from fields_support import billed_cost, shapes_policy
from support import line, settled

from proxy.testing.fake_upstream import WORD, FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

HEADERS = {"X-Cycles-Tenant": "alpha", "X-Cycles-Run": "r1"}
INPUT: Any = [
    {"role": "user", "content": [{"type": "input_text", "text": "Write a haiku about budgets."}]}
]


def client(stack: Stack, **kwargs: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, **kwargs
    )


async def test_response_is_charged_what_the_provider_billed(tmp_path: Path, store_url: str) -> None:
    fake = FakeUpstream(FakeSettings(cached_tokens=7, reasoning_tokens=11))
    async with local_stack(shapes_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with client(stack) as sdk:
            answer = await sdk.responses.create(
                model="gpt-4o-mini", input=INPUT, instructions="Be terse.", max_output_tokens=20
            )
        assert answer.output_text == WORD * 20
        assert answer.usage is not None and answer.usage.output_tokens == 31
        billed = fake.billed[0]
        assert (billed.cached_tokens, billed.completion_tokens) == (7, 31)
        row = await settled(stack.ledger)
        assert (row.spent, row.reserved) == (billed_cost(billed), 0)
        sent = fake.requests[0][2]
        assert sent["max_output_tokens"] == 20 and "store" not in sent


async def test_streamed_response_is_charged_from_its_completed_event(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(reasoning_tokens=5))
    async with local_stack(shapes_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with client(stack) as sdk:
            stream = await sdk.responses.create(
                model="gpt-4o-mini", input="Count to ten.", max_output_tokens=12, stream=True
            )
            events = [event async for event in stream]
            async with sdk.responses.stream(
                model="gpt-4o-mini", input=INPUT, max_output_tokens=8
            ) as helper:
                final = await helper.get_final_response()
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert text == WORD * 12
        assert events[-1].type == "response.completed"
        assert final.output_text == WORD * 8
        row = await settled(stack.ledger)
        assert (row.spent, row.reserved) == (sum(billed_cost(b) for b in fake.billed), 0)


async def test_stream_cut_before_completed_is_charged_at_least_the_reservation(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(cut_after=2, chunks=10, chunk_delay=0.5))
    async with local_stack(shapes_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with aiohttp.ClientSession() as http:
            body = {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 40, "stream": True}
            async with http.post(stack.url + "/v1/responses", json=body, headers=HEADERS) as r:
                reserved = (await line(stack.ledger, "alpha", "tenant")).reserved
                raw = await r.read()
        assert b"response.completed" not in raw
        row = await settled(stack.ledger)
        # No usage arrived: the charge is what was reserved while the stream ran (prompt + 40
        # output tokens), which covers what the provider billed for the whole generation.
        assert (row.spent, row.reserved) == (reserved, 0)
        assert fake.billed[0].completion_tokens == 40
        assert reserved >= billed_cost(fake.billed[0]) > 0


async def test_denied_response_is_402_and_the_sdk_does_not_retry(tmp_path: Path) -> None:
    pol = shapes_policy(tmp_path, "run: {limit: 0.000001}")
    sent: list[object] = []

    async def count(request: object) -> None:
        sent.append(request)

    async with local_stack(pol) as stack:
        http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [count]})
        async with client(stack, http_client=http) as sdk:
            with pytest.raises(openai.APIStatusError) as raised:
                await sdk.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=50)
        assert raised.value.status_code == 402
        body = raised.value.body
        assert isinstance(body, dict) and body["type"] == "budget_exceeded"
        assert len(sent) == 1, "the SDK retried a 402"
        assert stack.fake.calls == 0
        assert all(r.spent == r.reserved == 0 for r in await stack.ledger.balances("alpha"))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 42}, "input"),
        ({"input": []}, "input"),
        ({"input": [{"role": "user", "content": 7}]}, "input[0].content"),
        ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0]..."),
        ({"input": "hi", "instructions": ["x"]}, "'instructions'"),
        ({"input": "hi", "max_output_tokens": "ten"}, "max_output_tokens"),
    ],
)
async def test_bad_input_is_400_in_openai_shape_and_nothing_reserved(
    tmp_path: Path, body: dict[str, Any], param: str
) -> None:
    async with local_stack(shapes_policy(tmp_path)) as stack, aiohttp.ClientSession() as http:
        payload = {"model": "gpt-4o-mini", **body}
        async with http.post(stack.url + "/v1/responses", json=payload, headers=HEADERS) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"].startswith(param.rstrip("."))
        assert stack.fake.calls == 0
        assert await stack.ledger.balances("alpha") == []


async def test_gateway_sends_store_false_and_refuses_stored_state(
    tmp_path: Path, store_url: str
) -> None:
    """Every tenant shares the provider account: no response is stored, none can be resumed."""
    pol = shapes_policy(tmp_path, gateway=True)
    async with local_stack(pol, store=store_url, sweep_every=None) as stack:
        from proxy.gateway.context import API_KEYS

        plain, _ = await stack.app[API_KEYS].create("alpha")
        async with openai.AsyncOpenAI(base_url=stack.url + "/v1", api_key=plain) as sdk:
            answer = await sdk.responses.create(
                model="gpt-4o-mini", input="hi", max_output_tokens=4
            )
            assert answer.output_text == WORD * 4
            refused = [
                {"previous_response_id": answer.id},
                {"store": True},
                {"background": True},
                {"conversation": "conv_123"},
            ]
            for extra in refused:
                with pytest.raises(openai.BadRequestError) as raised:
                    await sdk.responses.create(
                        model="gpt-4o-mini", input="more", max_output_tokens=4, **extra
                    )
                body = raised.value.body
                assert isinstance(body, dict) and body["code"] == "stored_state_unavailable"
                assert body["param"] == next(iter(extra))
            with pytest.raises(openai.NotFoundError):
                await sdk.responses.retrieve(answer.id)
        assert [r[2].get("store") for r in stack.fake.requests] == [False]
        row = await settled(stack.ledger)
        assert (row.spent, row.reserved) == (billed_cost(stack.fake.billed[0]), 0)
