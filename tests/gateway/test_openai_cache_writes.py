"""OpenAI's newer models bill prompt-cache writes at the model's write price (1.25 times input) and
report them as `cache_write_tokens` (`prompt_tokens_details` on chat, `input_tokens_details` on
the Responses API). Any prompt may be written, so a model whose policy prices `cache_write`
reserves its prompt at the dearer of the input and write prices, and the writes reported are
charged at the write price; on a model the policy prices without one they are charged at 1.25
times input, never as plain input, and the operator is told, and reserved at that price too. A
stream without a usage report is charged its prompt at the price it was reserved at. The fake
provider reports the writes FakeSettings.openai_cache_write_tokens says; the tests price its
bill with their own formula (tests/prices_support.py: gpt-5 writes at $1.5625 per 1M, gpt-4o
at $3.125)."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prices_support import UNITS, billed_cost, edited_policy, measured, prices_policy

from proxy.budget.call import prepare
from proxy.budget.endpoints import ENDPOINTS
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

LATENCY = 0.15
PROMPT = "Summarise the incident report for the on-call engineer, step by step. " * 80
"""About 1,100 tokens, all of them written to the cache."""
WRITES = 10**6
"""More than any prompt here: the fake writes the whole uncached prompt."""
WRITE_FACTOR = Decimal("1.25")
"""What OpenAI bills a cache write, times the input price, on the models that bill writes."""
GPT5_WRITES = (
    "  gpt-5:\n    input: 1.25\n",
    "  gpt-5:\n    input: 1.25\n    cache_write: 1.5625\n",
)
"""gpt-5 with the write price OpenAI lists for the models that bill writes."""


def chat(model: str, stream: bool) -> tuple[str, dict[str, Any]]:
    said = [{"role": "user", "content": PROMPT}]
    body = {"model": model, "messages": said, "max_completion_tokens": 20, "stream": stream}
    return "/v1/chat/completions", body


def responses(model: str, stream: bool) -> tuple[str, dict[str, Any]]:
    body = {"model": model, "input": PROMPT, "max_output_tokens": 20, "stream": stream}
    return "/v1/responses", body


CALLS = {"chat": chat, "responses": responses}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("api", CALLS)
async def test_cache_writes_are_reserved_and_charged_at_the_model_s_write_price(
    tmp_path: Path, store_url: str, api: str, stream: bool
) -> None:
    path, body = CALLS[api]("gpt-5", stream)
    # The standard tier: `auto` would reserve at priority's 2×, hiding the write price.
    body["service_tier"] = "default"
    fake = FakeUpstream(FakeSettings(latency=LATENCY, openai_cache_write_tokens=WRITES))
    async with (
        local_stack(edited_policy(tmp_path, *GPT5_WRITES), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + path, stack.ledger, body)
    assert call.status == 200, call.answer
    [billed] = fake.billed
    assert billed.cache_write_tokens == billed.prompt_tokens > 1000, billed
    assert billed_cost(billed) == call.charged <= call.reserved, (billed, call)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("api", CALLS)
async def test_cache_writes_on_a_model_without_a_write_price_are_charged_at_1_25x_input(
    tmp_path: Path, store_url: str, api: str, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Charged at OpenAI's 1.25 times input, and reserved at it too: any prompt may be written,
    so the reservation holds what the charge may be."""
    path, body = CALLS[api]("gpt-4o", stream)  # gpt-4o: $2.50 input, $10 output, no cache_write
    fake = FakeUpstream(FakeSettings(latency=LATENCY, openai_cache_write_tokens=WRITES))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + path, stack.ledger, body)
    assert call.status == 200, call.answer
    [billed] = fake.billed
    written = billed.cache_write_tokens
    assert written == billed.prompt_tokens > 1000, billed
    per_million = (
        (billed.prompt_tokens - written) * Decimal("2.50")
        + written * Decimal("2.50") * WRITE_FACTOR
        + billed.completion_tokens * Decimal(10)
    )
    exact = per_million * UNITS / 10**6
    assert billed_cost(billed) == call.charged == math.ceil(exact), (billed, call)
    assert call.charged <= call.reserved, (billed, call)
    assert "DEFAULTED CACHE WRITE PRICE" in caplog.text
    assert "models.gpt-4o" in caplog.text


def test_an_openai_prompt_on_a_model_without_a_write_price_is_reserved_at_1_25x_input(
    tmp_path: Path,
) -> None:
    """The reservation, by the rule: every prompt token at 1.25 times input, the completion at
    the output price; on chat and the Responses API alike."""
    pol = prices_policy(tmp_path)
    for api, call_of in CALLS.items():
        path, body = call_of("gpt-4o", False)
        call = prepare(pol, pol.plans["test"], ENDPOINTS[path], orjson.dumps(body), shadow=False)
        prompt = call.asked.prompt_tokens
        per_million = prompt * Decimal("2.50") * WRITE_FACTOR + 20 * Decimal(10)
        assert call.asked.amounts["USD"] == math.ceil(per_million * UNITS / 10**6), api


async def test_a_stream_without_usage_is_charged_its_prompt_at_the_write_price(
    tmp_path: Path, store_url: str
) -> None:
    """No usage report (a server that ignores include_usage) says whether the prompt was
    written: it is charged at the price it was reserved at, which covers the writes billed."""
    path, body = chat("gpt-4o", True)
    settings = FakeSettings(latency=LATENCY, openai_cache_write_tokens=WRITES, send_usage=False)
    fake = FakeUpstream(settings)
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + path, stack.ledger, body)
    assert call.status == 200
    [billed] = fake.billed
    assert billed.cache_write_tokens == billed.prompt_tokens > 1000, billed
    assert billed_cost(billed) <= call.charged <= call.reserved, (billed, call)
