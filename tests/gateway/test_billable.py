"""Everything a provider bills is priced by the policy, reserved, and charged; the rest is refused.

The fake provider bills each case the way the real one does (tests/prices_support.py: a tier's
factor, hosted tool calls and what they add to the input, long-context prices, documents,
Claude's tool prompt) and the oracle prices its bill by DESIGN's formula. Each admitted call is
billed ≤ charged ≤ reserved, and calls racing for a tight budget never spend beyond it. A model
name that only extends a priced one, and a tier, tool, document or beta its entry does not
price, are refused before anything is reserved or sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from prices_support import (
    HEADERS,
    LONG_ABOVE,
    billed_cost,
    measured,
    prices_policy,
    tenant_row,
)
from support import settled, usd

from proxy.policy import load_policy
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

LATENCY = 0.15
"""Long enough to read a call's reservation while it is upstream."""
LONG = "Answer as a patient tutor would, one short step at a time. " * 200
BETA = {"anthropic-beta": "context-1m-2025-08-07"}
LONG_MODEL = "claude-sonnet-4-5"
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}


def chat(model: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    messages = [{"role": "user", "content": "Count to three."}]
    return "chat", {"model": model, "max_completion_tokens": 40, "messages": messages, **extra}


def responses(model: str = "gpt-5", **extra: Any) -> tuple[str, dict[str, Any]]:
    return "responses", {"model": model, "max_output_tokens": 40, "input": "Count.", **extra}


def messages(model: str = "claude-sonnet-4", **extra: Any) -> tuple[str, dict[str, Any]]:
    said = [{"role": "user", "content": "Count to three."}]
    return "messages", {"model": model, "max_tokens": 40, "messages": said, **extra}


WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search"}
FILE = {"type": "input_file", "file_id": "file-abc123"}
CLAUDE_PDF = {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}}
SMALL_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@dataclass(frozen=True)
class Case:
    call: tuple[str, dict[str, Any]]
    fake: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False


CASES = {
    "priority-chat": Case(chat("gpt-5", service_tier="priority")),
    "priority-chat-streamed": Case(chat("gpt-5", service_tier="priority"), stream=True),
    "flex-responses": Case(responses(service_tier="flex")),
    "auto-served-priority": Case(chat("gpt-5"), {"service_tier": "priority"}),
    "auto-served-priority-responses-streamed": Case(
        responses(), {"service_tier": "priority"}, stream=True
    ),
    "web-search": Case(
        responses(tools=[{"type": "web_search"}], max_tool_calls=3),
        {"hosted_tool_calls": 2, "tool_input_tokens": 500},
    ),
    "web-search-streamed": Case(
        responses(tools=[{"type": "web_search_preview"}], max_tool_calls=3),
        {"hosted_tool_calls": 3, "tool_input_tokens": 600},
        stream=True,
    ),
    "web-search-plan-default": Case(
        responses(tools=[{"type": "web_search"}]),
        {"hosted_tool_calls": 9, "tool_input_tokens": 600},
    ),
    "file-and-web-search": Case(
        responses(tools=[{"type": "file_search"}, {"type": "web_search"}], max_tool_calls=2),
        {"hosted_tool_calls": 5, "tool_input_tokens": 600},
    ),
    "code-interpreter": Case(
        responses(tools=[{"type": "code_interpreter", "container": {"type": "auto"}}]),
        {"hosted_tool_calls": 3, "tool_input_tokens": 200},
    ),
    "anthropic-web-search": Case(
        messages(tools=[{**WEB_SEARCH, "max_uses": 3}]),
        {"hosted_tool_calls": 2, "tool_input_tokens": 500},
    ),
    "anthropic-web-search-streamed": Case(
        messages(tools=[{**WEB_SEARCH, "max_uses": 3}]),
        {"hosted_tool_calls": 3, "tool_input_tokens": 600},
        stream=True,
    ),
    "anthropic-web-search-plan-default": Case(
        messages(tools=[WEB_SEARCH]), {"hosted_tool_calls": 9, "tool_input_tokens": 600}
    ),
    "long-context": Case(
        messages(LONG_MODEL, system=LONG), {"long_context_above": LONG_ABOVE}, BETA
    ),
    "long-context-streamed": Case(
        messages(LONG_MODEL, system=LONG), {"long_context_above": LONG_ABOVE}, BETA, stream=True
    ),
    "document-responses": Case(
        responses(input=[{"role": "user", "content": [FILE]}]), {"document_tokens": 2900}
    ),
    "document-chat": Case(
        chat("gpt-5", messages=[{"role": "user", "content": [{"type": "file", "file": FILE}]}]),
        {"document_tokens": 2900},
    ),
    "stored-prompt": Case(responses(prompt={"id": "pmpt_abc"}), {"document_tokens": 2900}),
    "document-messages": Case(
        messages(messages=[{"role": "user", "content": [CLAUDE_PDF]}]), {"document_tokens": 5500}
    ),
    "claude-tool-prompt": Case(messages("claude-haiku-4", tools=[SMALL_TOOL])),
    "dated-snapshot": Case(chat("gpt-4o-2024-08-06")),
    "mmdd-snapshot": Case(chat("gpt-4-0613")),
    "declared-alias": Case(chat("chatgpt-4o-latest")),
    "claude-dated-snapshot": Case(messages("claude-sonnet-4-20250514")),
}
RACES = (
    "priority-chat",
    "auto-served-priority",
    "web-search",
    "code-interpreter",
    "anthropic-web-search-streamed",
    "long-context",
    "document-responses",
    "document-messages",
    "claude-tool-prompt",
)


def fake_for(case: Case) -> FakeUpstream:
    return FakeUpstream(FakeSettings(latency=LATENCY, **case.fake))


def request_of(case: Case) -> tuple[str, dict[str, Any]]:
    endpoint, body = case.call
    return PATHS[endpoint], {**body, "stream": True} if case.stream else body


@pytest.mark.parametrize("name", CASES)
async def test_each_call_is_billed_at_most_what_it_is_charged_at_most_what_it_reserved(
    tmp_path: Path, store_url: str, name: str
) -> None:
    case = CASES[name]
    path, body = request_of(case)
    fake = fake_for(case)
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + path, stack.ledger, body, case.headers)
        assert call.status == 200, call.answer
        [billed] = fake.billed
        assert call.charged == billed_cost(billed)
        assert billed_cost(billed) <= call.reserved


@pytest.mark.parametrize("name", RACES)
async def test_calls_racing_for_a_tight_budget_never_spend_beyond_it(
    tmp_path: Path, store_url: str, name: str
) -> None:
    case = CASES[name]
    path, body = request_of(case)
    async with local_stack(prices_policy(tmp_path), fake=fake_for(case)) as probe:
        async with aiohttp.ClientSession() as http:
            alone = await measured(http, probe.url + path, probe.ledger, body, case.headers)
        one = billed_cost(probe.fake.billed[0])
    # Two and a half bills, and room for at least one reservation (which holds every billed
    # dimension at its most, so it may be more than that).
    limit = max(one * 5 // 2, alone.reserved)
    fake = fake_for(case)
    async with (
        local_stack(prices_policy(tmp_path, usd(limit)), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        headers = {**HEADERS, **case.headers}

        async def send() -> int:
            async with http.post(stack.url + path, json=body, headers=headers) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(send() for _ in range(6)))
        assert sorted(set(statuses)) == [200, 402]
        row = await settled(stack.ledger)
        assert row.spent == sum(billed_cost(b) for b in fake.billed)
        assert row.spent <= limit


async def refused(
    tmp_path: Path,
    store_url: str,
    endpoint: str,
    body: dict[str, Any],
    headers: Mapping[str, str] = HEADERS,
) -> dict[str, Any]:
    """One call under the prices policy that must be refused (400) before anything happens: its
    answer, once shown that the provider saw nothing and the ledger did not move."""
    async with (
        local_stack(prices_policy(tmp_path), store=store_url) as stack,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(stack.url + PATHS[endpoint], json=body, headers=headers) as r:
            assert r.status == 400
            answer: dict[str, Any] = await r.json()
        assert stack.fake.calls == 0
        assert all(r.spent == r.reserved == 0 for r in await stack.ledger.balances("alpha"))
    return answer


NOT_PRICED = ["o1-pro", "gpt-5-pro", "gpt-4o-audio-preview", "gpt-4o-unlisted-anything"]
NOT_PRICED += ["gpt-4o-2024-08-06-preview", "gpt-4o-2024-13-01", "claude-sonnet-4-0"]


@pytest.mark.parametrize("model", NOT_PRICED)
async def test_a_name_that_only_extends_a_priced_model_is_refused_and_reserves_nothing(
    tmp_path: Path, store_url: str, model: str
) -> None:
    endpoint, body = messages(model) if model.startswith("claude") else chat(model)
    answer = await refused(tmp_path, store_url, endpoint, body)
    assert answer["error"]["code"] == "model_not_priced"
    assert model in answer["error"]["message"]


UNPRICED = {
    "tier-on-a-model-without-tiers": (chat("gpt-4o", service_tier="priority"), "service_tiers"),
    "tier-the-model-lacks": (chat("gpt-4o-mini", service_tier="priority"), "priority"),
    "scale-tier": (responses(service_tier="scale"), "service_tiers: {scale"),
    "hosted-tool-on-a-model-without-tools": (
        responses("gpt-4o", tools=[{"type": "web_search"}]),
        "tool_calls: {web_search",
    ),
    "hosted-tool-the-model-lacks": (
        responses(tools=[{"type": "image_generation"}]),
        "tool_calls: {image_generation",
    ),
    "unknown-hosted-tool": (
        responses(tools=[{"type": "deep_research_2026_01_01"}]),
        "tool_calls: {deep_research",
    ),
    "anthropic-server-tool": (messages("claude-haiku-4", tools=[WEB_SEARCH]), "web_search"),
    "anthropic-web-fetch": (
        messages(tools=[{"type": "web_fetch_20250910", "name": "web_fetch"}]),
        "tool_calls: {web_fetch",
    ),
    "document-file-id": (
        responses("gpt-4o", input=[{"role": "user", "content": [FILE]}]),
        "documents: {tokens_per_file",
    ),
    "document-chat-file": (
        chat("gpt-4o", messages=[{"role": "user", "content": [{"type": "file", "file": FILE}]}]),
        "documents:",
    ),
    "stored-prompt": (responses("gpt-4o", prompt={"id": "pmpt_abc"}), "prompt"),
    "anthropic-document": (
        messages("claude-haiku-4", messages=[{"role": "user", "content": [CLAUDE_PDF]}]),
        "documents:",
    ),
}


@pytest.mark.parametrize("name", UNPRICED)
async def test_a_tier_tool_or_document_the_policy_does_not_price_is_refused(
    tmp_path: Path, store_url: str, name: str
) -> None:
    (endpoint, body), words = UNPRICED[name]
    answer = await refused(tmp_path, store_url, endpoint, body)
    error = answer["error"]
    assert error["code"] == "unpriced_feature"
    assert words in error["message"] and "models." in error["message"]
    if endpoint == "messages":
        assert answer["type"] == "error" and error["type"] == "invalid_request_error"


BETA_LINES = {
    "one-line": [("anthropic-beta", "prompt-caching-2024-07-31, context-1m-2025-08-07")],
    "two-lines": [
        ("anthropic-beta", "prompt-caching-2024-07-31"),
        ("anthropic-beta", "context-1m-2025-08-07"),
    ],
}


@pytest.mark.parametrize("lines", BETA_LINES)
async def test_a_long_context_beta_the_policy_does_not_price_is_refused(
    tmp_path: Path, store_url: str, lines: str
) -> None:
    endpoint, body = messages("claude-haiku-4")
    headers = CIMultiDict([*HEADERS.items(), *BETA_LINES[lines]])
    answer = await refused(tmp_path, store_url, endpoint, body, headers)
    assert answer["error"]["code"] == "unpriced_feature"
    assert "long_context: {above:" in answer["error"]["message"]


async def test_a_short_prompt_with_the_long_context_beta_is_charged_normal_prices(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY, long_context_above=LONG_ABOVE))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        url = stack.url + PATHS["messages"]
        call = await measured(http, url, stack.ledger, messages(LONG_MODEL)[1], BETA)
        [billed] = fake.billed
        assert not billed.long_context
        assert billed_cost(billed) == call.charged <= call.reserved


async def test_with_a_hard_bound_the_plan_default_bounds_hosted_tool_calls_upstream(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(hosted_tool_calls=9))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        for endpoint, body in (
            responses(tools=[{"type": "web_search"}]),
            responses(tools=[{"type": "web_search"}], max_tool_calls=2),
            messages(tools=[WEB_SEARCH, SMALL_TOOL]),
            messages(tools=[{**WEB_SEARCH, "max_uses": 1}, SMALL_TOOL]),
        ):
            async with http.post(stack.url + PATHS[endpoint], json=body, headers=HEADERS) as r:
                assert r.status == 200, await r.text()
        sent = [body for _, _, body in fake.requests]
        assert sent[0]["max_tool_calls"] == 4
        assert sent[1]["max_tool_calls"] == 2
        assert [t.get("max_uses") for t in sent[2]["tools"]] == [4, None]
        assert [t.get("max_uses") for t in sent[3]["tools"]] == [1, None]
        assert [b.tool_calls for b in fake.billed] == [
            {"web_search": 4},
            {"web_search": 2},
            {"web_search": 4},
            {"web_search": 1},
        ]


async def test_a_completion_fitted_to_what_remains_is_priced_at_the_tier_and_tool_fees(
    tmp_path: Path, store_url: str
) -> None:
    """The reserve script fits the completion from the prompt's cost and the output price: both
    must be the tier's, with the tool fees in the prompt's, or the fitted call overspends."""
    endpoint, body = responses(
        service_tier="priority", max_output_tokens=4000, tools=[{"type": "web_search"}]
    )
    body["max_tool_calls"] = 2
    limit = "0.06"  # 2 searches (0.02) and about 1,900 output tokens at priority (0.02 per 1K)
    fit = "[{when: {does_not_fit: true}, set: {fit: {min_tokens: 10}}}]"
    fake = FakeUpstream(FakeSettings(hosted_tool_calls=2, tool_input_tokens=600))
    async with (
        local_stack(prices_policy(tmp_path, limit, fit), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(stack.url + PATHS[endpoint], json=body, headers=HEADERS) as r:
            assert r.status == 200, await r.text()
            assert r.headers["X-Cycles-Decision"] == "ALLOW_WITH_CAPS"
        [sent] = [b for _, _, b in fake.requests]
        assert 1000 < sent["max_output_tokens"] < 4000
        row = await tenant_row(stack.ledger)
        assert row.spent == billed_cost(fake.billed[0]) <= int(Decimal(limit) * 10**8)


async def test_auto_reserves_the_dearest_priced_tier_and_is_charged_the_tier_served(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        url = stack.url + PATHS["chat"]
        call = await measured(http, url, stack.ledger, chat("gpt-5", service_tier="auto")[1])
        [billed] = fake.billed
        assert billed.service_tier == "default"
        assert call.charged == billed_cost(billed)
        priority = billed_cost(billed.__class__(**{**vars(billed), "service_tier": "priority"}))
        assert priority <= call.reserved


async def test_a_served_tier_the_policy_does_not_price_charges_the_reservation_loudly(
    tmp_path: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Half the completion: what the usage report prices is well below the reservation. With
    # bound: soft nothing pins the tier, so the account's priority tier serves the call.
    fake = FakeUpstream(
        FakeSettings(latency=LATENCY, service_tier="priority", completion_fraction=0.5)
    )
    prices_policy(tmp_path)
    soft = tmp_path / "policy.yaml"
    soft.write_text(soft.read_text() + "bound: soft\n")
    policy = load_policy(soft)
    async with (
        local_stack(policy, store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        url = stack.url + PATHS["chat"]
        call = await measured(http, url, stack.ledger, chat("gpt-4o-mini")[1])
        [billed] = fake.billed
        assert billed.service_tier == "priority"
        assert billed.completion_tokens == 20
        assert call.charged == call.reserved > 0
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("UNPRICED" in e and "priority" in e and "gpt-4o-mini" in e for e in errors)
