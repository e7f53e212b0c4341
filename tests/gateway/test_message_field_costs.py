"""What a message carries besides its content is billed too (issue 13, a closed world one level
down): OpenAI counts every string field of a chat message, so an assistant turn sent back with
its `refusal` costs that text's tokens, and the proxy reserves them; a field whose cost the proxy
cannot see (an `audio` reference to an earlier spoken answer, a Responses `item_reference`, a
field no table lists) is refused with 400 `unpriced_feature` naming where it is, and nothing is
reserved or sent, unless the policy says `request_fields: forward`.

The expected amounts are what the fake provider billed (the cookbook's count of every string
field), priced by tests/prices_support.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from prices_support import HEADERS, UNITS, billed_cost, measured_call, prices_policy, tenant_row

from proxy.policy import load_policy
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

LATENCY = 0.15
REFUSAL = "I can't help with that request, as it asks for something I must decline. " * 300
"""About 4,800 tokens the fake bills and a count of content alone leaves out."""


def turns(refusal: str) -> list[dict[str, Any]]:
    """A conversation sent back with the assistant's refusal, as the openai SDK returns it."""
    return [
        {"role": "user", "content": "Write the thing."},
        {"role": "assistant", "content": None, "refusal": refusal},
        {"role": "user", "content": "Then say hi."},
    ]


def openai_client(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
    )


async def chat(client: openai.AsyncOpenAI, stream: bool) -> None:
    answer = await client.chat.completions.create(
        model="gpt-4o",
        messages=turns(REFUSAL),  # type: ignore[arg-type]
        max_completion_tokens=20,
        stream=stream,  # type: ignore[call-overload]
    )
    if stream:
        _ = [chunk async for chunk in answer]  # type: ignore[union-attr]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_refusal_sent_back_is_reserved_and_charged_what_was_billed(
    tmp_path: Path, store_url: str, stream: bool
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        openai_client(stack) as client,
    ):
        _, reserved, charged = await measured_call(stack.ledger, chat(client, stream))
    [billed] = fake.billed
    assert billed.prompt_tokens > 4000, billed
    assert billed_cost(billed) <= charged <= reserved, (billed, charged, reserved)


async def test_a_refusal_cannot_carry_a_tenant_past_its_limit(
    tmp_path: Path, store_url: str
) -> None:
    """$0.001 holds the call's content (a few dozen tokens) but not its refusal's ~4,800
    tokens: the call is refused before it is sent, and the tenant spends nothing."""
    limit = "0.001"
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with (
        local_stack(prices_policy(tmp_path, limit=limit), store=store_url, fake=fake) as stack,
        openai_client(stack) as client,
    ):
        with pytest.raises(openai.APIStatusError) as raised:
            await chat(client, stream=False)
        row = await tenant_row(stack.ledger)
    assert raised.value.status_code == 402
    assert fake.billed == [] and row.spent == row.reserved == 0
    assert row.spent <= float(limit) * UNITS


async def send_refused(stack: Stack, api: str) -> None:
    """One call the tables refuse, by the SDK of its API."""
    if api == "chat":
        async with openai_client(stack) as client:
            await client.chat.completions.create(
                model="gpt-4o",
                max_completion_tokens=20,
                messages=[
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": None, "audio": {"id": "audio_abc"}},
                ],
            )
    elif api == "chat-unknown":
        async with openai_client(stack) as client:
            await client.chat.completions.create(
                model="gpt-4o",
                max_completion_tokens=20,
                messages=[{"role": "user", "content": "hi", "turbo": True}],  # type: ignore[list-item]
            )
    elif api == "responses":
        async with openai_client(stack) as client:
            await client.responses.create(
                model="gpt-4o",
                max_output_tokens=20,
                input=[{"type": "item_reference", "id": "msg_earlier"}],
            )
    else:
        async with anthropic.AsyncAnthropic(
            base_url=stack.url, api_key="unused", default_headers=HEADERS, max_retries=0
        ) as claude:
            await claude.messages.create(
                model="claude-sonnet-4",
                max_tokens=20,
                messages=[{"role": "user", "content": "hi", "turbo": True}],  # type: ignore[typeddict-unknown-key]
            )


CASES = {
    "chat": "messages[1].audio",
    "chat-unknown": "messages[0].turbo",
    "responses": "input[0]",
    "messages": "messages[0].turbo",
}


@pytest.mark.parametrize("api", CASES)
async def test_a_message_field_or_item_the_proxy_cannot_price_is_refused_and_changes_nothing(
    tmp_path: Path, store_url: str, api: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        with pytest.raises((openai.BadRequestError, anthropic.BadRequestError)) as raised:
            await send_refused(stack, api)
        balances = await stack.ledger.balances("alpha")
    error: Any = raised.value.body
    error = error.get("error", error) if isinstance(error, dict) else {}
    assert error.get("code") == "unpriced_feature", raised.value.body
    assert CASES[api] in error["message"] and "request_fields: forward" in error["message"]
    assert fake.requests == [] and fake.billed == []
    assert all(r.spent == r.reserved == 0 for r in balances)


@pytest.mark.parametrize("api", CASES)
async def test_request_fields_forward_lets_them_through(tmp_path: Path, api: str) -> None:
    policy = prices_policy(tmp_path)
    path = tmp_path / "policy.yaml"
    path.write_text(path.read_text() + "request_fields: forward\n")
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(load_policy(path), fake=fake) as stack:
        await send_refused(stack, api)
    assert policy.request_fields == "strict" and len(fake.billed) == 1
