"""Adversarial review of "delivered means billable" and "prices" (issue 13): each test states the
promise (billed ≤ charged ≤ reserved; what is not modelled is refused with a 4xx) for one call
that breaks it, and fails while it is broken."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prices_support import POLICY, billed_cost, measured, prices_policy

from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

LATENCY = 0.15
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
UNITS = 10**8


def review_policy(tmp_path: Path, models: str = "", top: str = "") -> Policy:
    """The prices policy (tests/prices_support.py) with more models and top-level settings."""
    text = POLICY.replace("{limit}", "50")
    text = text.replace("models:\n", "models:\n" + models, 1)
    path = tmp_path / "policy.yaml"
    path.write_text(text + top)
    return load_policy(path)


def _ceil(value: Fraction) -> int:
    return -(-value.numerator // value.denominator)


# -- chat completions: web search is billed per call, and the chat path never prices it ---------


async def test_chat_web_search_options_is_refused_or_its_search_fee_reserved(
    tmp_path: Path, store_url: str
) -> None:
    """A search-preview chat model bills every web search ($27.50 per 1000 for
    gpt-4o-mini-search-preview) besides tokens. The operator priced the fee in `tool_calls`, yet a
    chat request with `web_search_options` is forwarded with no fee reserved (billable.read reads
    no tools on the chat endpoint): the fee is neither reserved nor charged."""
    fee = "0.0275"
    models = (
        "  gpt-4o-mini-search-preview: {input: 0.15, output: 0.60, "
        f"tool_calls: {{web_search: {fee}}}}}\n"
    )
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    body = {
        "model": "gpt-4o-mini-search-preview",
        "messages": [{"role": "user", "content": "What is in the news today?"}],
        "max_completion_tokens": 40,
        "web_search_options": {"search_context_size": "high"},
    }
    async with (
        local_stack(review_policy(tmp_path, models), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + PATHS["chat"], stack.ledger, body)
    fee_units = int(Fraction(fee) * UNITS)
    assert call.status >= 400 or call.reserved >= fee_units, (
        f"forwarded (status {call.status}) with {call.reserved} units reserved, below one "
        f"search's fee ({fee_units} units); charged {call.charged}"
    )


# -- service tiers: auto served at a tier the model does not price --------


async def test_auto_served_at_an_unpriced_tier_is_not_billed_more_than_charged(
    tmp_path: Path, store_url: str
) -> None:
    """No service_tier means auto: the account's configured tier (metering/billable.py says so).
    gpt-4o prices no tier, so the call is reserved at standard and forwarded; the provider serves it
    at priority (gpt-4o: $4.25/$17 per 1M, 1.7×). settled_amounts charges max(cost at 1×,
    reservation), well below what priority bills: billed > charged. Auto on a model that prices
    no tier is a call the proxy cannot bound, so it must be refused, or (bound: hard) sent with
    service_tier `default` so the provider serves it at the tier reserved."""
    fake = FakeUpstream(FakeSettings(latency=LATENCY, service_tier="priority"))
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Count to three."}],
        "max_completion_tokens": 40,
    }
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + PATHS["chat"], stack.ledger, body)
    if call.status >= 400:
        return  # refused: the promise holds
    [billed] = fake.billed
    standard = billed_cost(dataclasses.replace(billed, service_tier="default"))
    factor = Fraction(17, 10) if billed.service_tier == "priority" else Fraction(1)
    billed_at_tier = _ceil(Fraction(standard) * factor)
    assert billed_at_tier <= call.charged <= call.reserved, (
        f"billed {billed_at_tier} ({billed.service_tier}), charged {call.charged}, "
        f"reserved {call.reserved}"
    )


# -- hosted tools: code_interpreter's calls are unbounded and each adds input --------


async def test_code_interpreter_calls_are_bounded_by_what_was_reserved(
    tmp_path: Path, store_url: str
) -> None:
    """gpt-5 prices code_interpreter at {per_call: 0.03, input_tokens: 600}. A Responses call
    with only code_interpreter reserves one container and 600 input tokens (billable._responses:
    PER_CONTAINER goes to `own` with 1, and nothing is pooled, so no max_tool_calls is written
    with bound: hard). The model then runs the interpreter 8 times, each adding its output to the
    input: charged (the exact report) > reserved."""
    fake = FakeUpstream(FakeSettings(latency=LATENCY, hosted_tool_calls=8, tool_input_tokens=600))
    body = {
        "model": "gpt-5",
        "max_output_tokens": 40,
        "input": "Compute the first 50 primes.",
        "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}],
    }
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + PATHS["responses"], stack.ledger, body)
    assert call.status == 200, call.answer
    [billed] = fake.billed
    assert billed_cost(billed) <= call.charged <= call.reserved, (
        f"billed {billed_cost(billed)}, charged {call.charged}, reserved {call.reserved} "
        f"(prompt billed {billed.prompt_tokens}, {billed.tool_input_tokens} from tool calls)"
    )


# -- streams with running usage, cut before their end --------


STREAM_TIMEOUTS = "timeouts: {chunk_idle: 0.3}\n"


async def test_a_stream_with_running_usage_cut_early_is_charged_its_reservation(
    tmp_path: Path, store_url: str
) -> None:
    """A provider with running usage on every chunk (vLLM continuous usage stats) goes silent
    past chunk_idle: the proxy cuts the stream. The provider bills the whole generation, but
    settle.charge_for charges the last running usage it saw (a partial count), because any
    usage report wins over the `complete` flag: billed > charged."""
    fake = FakeUpstream(
        FakeSettings(latency=LATENCY, continuous_usage=True, chunks=5, chunk_delay=0.6)
    )
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Count to forty."}],
        "max_completion_tokens": 40,
        "stream": True,
    }
    async with (
        local_stack(
            review_policy(tmp_path, top=STREAM_TIMEOUTS), store=store_url, fake=fake
        ) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + PATHS["chat"], stack.ledger, body)
    [billed] = fake.billed
    assert billed.completion_tokens == 40
    assert billed_cost(billed) <= call.charged <= call.reserved, (
        f"billed {billed_cost(billed)} (40 completion tokens), charged {call.charged}, "
        f"reserved {call.reserved}"
    )


# -- audio output on a model whose entry prices no audio --------


async def test_audio_output_on_a_model_without_an_audio_price_is_refused(
    tmp_path: Path, store_url: str
) -> None:
    """gpt-4o-audio-preview bills audio output at $80 per 1M (text: $10). Its entry here prices
    text only, as documents and tiers would be priced only when listed. A request asking for
    audio output (`modalities: ["text", "audio"]`) is still forwarded, and its audio tokens are
    charged at the text output price (pricing._tokens_times_million falls back to `output`;
    token_kinds.estimate_price only raises the estimate when `audio_output` is priced): an
    unpriced billed dimension forwarded on trust, not refused like an unpriced tier or document."""
    models = "  gpt-4o-audio-preview: {input: 2.50, output: 10}\n"
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    body = {
        "model": "gpt-4o-audio-preview",
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        "messages": [{"role": "user", "content": "Read me a poem."}],
        "max_completion_tokens": 40,
    }
    async with (
        local_stack(review_policy(tmp_path, models), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(
            stack.url + PATHS["chat"], json=body, headers={"X-Cycles-Tenant": "alpha"}
        ) as r:
            status = r.status
        calls = stack.fake.calls
    assert status >= 400 and calls == 0, (
        f"audio output with no audio_output price was forwarded: status {status}, "
        f"{calls} upstream call(s)"
    )


# -- a stored prompt brings its own hosted tools --------


async def test_a_stored_prompt_with_hosted_tools_is_not_charged_beyond_its_reservation(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Responses `prompt: {id}` is a stored template, and a template saved in the dashboard
    carries its own `tools` (web_search here). billable._responses reads hosted tools only from
    the request's `tools`, so the call reserves the prompt's `documents` tokens but no tool fee
    and writes no max_tool_calls; the provider searches as often as it likes and the fees are
    charged from the output items: charged > reserved. The fake is told to play such a template
    (its hosted_tools sees the template's tools), and bills the template as the document it is
    and each search's results as the input they add, as the policy says (3,000 and 600 tokens):
    the call's only slack is then its tier and write prices, no match for the searches' fees."""
    from proxy.testing import fake_billing

    original = fake_billing.hosted_tools

    def with_template_tools(
        endpoint: str, body: dict[str, Any], made: int
    ) -> tuple[dict[str, int], list[dict[str, Any]]]:
        if endpoint == "responses" and isinstance(body.get("prompt"), dict):
            body = {**body, "tools": [*(body.get("tools") or ()), {"type": "web_search"}]}
        return original(endpoint, body, made)

    monkeypatch.setattr(fake_billing, "hosted_tools", with_template_tools)
    settings = FakeSettings(
        latency=LATENCY, hosted_tool_calls=6, tool_input_tokens=600, document_tokens=3000
    )
    fake = FakeUpstream(settings)
    body = {
        "model": "gpt-5",
        "max_output_tokens": 40,
        "prompt": {"id": "pmpt_researcher"},
        "input": "Latest news on fusion power?",
    }
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + PATHS["responses"], stack.ledger, body)
    assert call.status == 200, call.answer
    [billed] = fake.billed
    # The template's searches were made (as many as the max_tool_calls written allows).
    assert set(billed.tool_calls) == {"web_search"}
    assert billed_cost(billed) <= call.charged <= call.reserved, (
        f"billed {billed_cost(billed)}, charged {call.charged}, reserved {call.reserved}"
    )


# -- a degraded call's service tier is its own model's --------


async def test_a_degraded_call_is_sent_at_the_tier_its_own_model_was_reserved_at(
    tmp_path: Path, store_url: str
) -> None:
    """gpt-5 prices priority (×2), so a call that names no tier is reserved at priority and sent
    as it is. It does not fit; the plan degrades it to gpt-4o-mini, which prices no tier above
    the standard one: reserved at standard, it must be sent `service_tier: default`, or the
    account's configured tier (priority) serves it at a price nobody reserved."""
    fake = FakeUpstream(FakeSettings(latency=LATENCY, service_tier="priority"))
    body = {
        "model": "gpt-5",
        "messages": [{"role": "user", "content": "Count to three."}],
        "max_completion_tokens": 2000,
    }
    degrade = "[{when: {does_not_fit: true}, set: {model: gpt-4o-mini}}]"
    async with (
        local_stack(prices_policy(tmp_path, "0.01", degrade), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + PATHS["chat"], stack.ledger, body)
    assert call.status == 200, call.answer
    [(_, _, sent)] = fake.requests
    [billed] = fake.billed
    assert (sent["model"], sent.get("service_tier")) == ("gpt-4o-mini", "default")
    assert billed.service_tier == "default"
    assert billed_cost(billed) == call.charged <= call.reserved
