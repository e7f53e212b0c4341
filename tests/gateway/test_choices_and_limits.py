"""Choices and completion limits: what a call can make the provider generate is what it reserves.

Issue 13's repros. A batch of prompts on /v1/completions gets n choices for each prompt; `best_of`
candidates are generated and billed (completions, and chat on vLLM); a limit of 0 is no bound at
all to a server that reads `max_completion_tokens or max_tokens` (vLLM, SGLang, the fake); and
exactly one limit field goes up, holding the bound the proxy reserved. Every case ends with the
fake's bill within the charge and the charge within the reservation, and no tenant past its limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fields_support import BODIES, HEADERS, UNITS, books, fields_policy, one_call

from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack, serving

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
CENT = UNITS // 100
BATCHES = {
    "strings": ["Say hi"] * 200,
    "token-lists": [[15339, 1917, 0]] * 200,
}


async def post(
    stack: Stack, path: str, body: dict[str, Any], headers: dict[str, str] = HEADERS
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(stack.url + path, json=body, headers=headers) as r,
    ):
        return r.status, await r.json(), dict(r.headers)


async def spent(stack: Stack, tenant: str = "alpha") -> tuple[int, int]:
    rows = [r for r in await stack.ledger.balances(tenant) if r.level == "tenant"]
    return (rows[0].spent, rows[0].reserved) if rows else (0, 0)


async def assert_refused_and_nothing_changed(stack: Stack) -> None:
    assert stack.fake.requests == []
    assert all(r.spent == r.reserved == 0 for r in await stack.ledger.balances("alpha"))


# -- (2) a batch of prompts on /v1/completions -------------------------------------------------


@pytest.mark.parametrize("batch", BATCHES)
async def test_a_batch_of_200_prompts_is_refused_by_a_budget_that_covers_one(
    tmp_path: Path, store_url: str, batch: str
) -> None:
    """The issue's repro: reserved as one prompt and one choice, it spent $0.0806 of $0.01."""
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": BATCHES[batch], "max_tokens": 200}
    async with local_stack(fields_policy(tmp_path, limit="0.01"), store=store_url) as stack:
        status, answer, _ = await post(stack, COMPLETIONS, body)
        assert status == 402, answer
        assert answer["error"]["type"] == "budget_exceeded"
        await assert_refused_and_nothing_changed(stack)


@pytest.mark.parametrize("batch", BATCHES)
async def test_a_batch_is_reserved_for_every_prompts_choices(
    tmp_path: Path, store_url: str, batch: str
) -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": BATCHES[batch], "max_tokens": 200, "n": 2}
    async with local_stack(fields_policy(tmp_path, limit="1"), store=store_url) as stack:
        status, answer, _ = await post(stack, COMPLETIONS, body)
        assert status == 200, answer
        assert len(answer["choices"]) == 400
        assert stack.fake.billed[0].completion_tokens == 200 * 2 * 200
        await one_call(stack)
        assert (await spent(stack))[0] <= UNITS


async def test_max_tokens_per_request_caps_each_choice_of_a_batch(
    tmp_path: Path, store_url: str
) -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": ["Say hi"] * 50, "max_tokens": 5000}
    pol = fields_policy(tmp_path, limit="1", plan="quotas: {max_tokens_per_request: 200}")
    async with local_stack(pol, store=store_url) as stack:
        status, answer, headers = await post(stack, COMPLETIONS, body)
        assert status == 200, answer
        assert headers["X-Cycles-Caps"] == "max_tokens=200"
        assert stack.fake.requests[0][2]["max_tokens"] == 200
        assert stack.fake.billed[0].completion_tokens == 200 * 50
        await one_call(stack)


async def test_fit_spreads_what_remains_over_every_choice_of_a_batch(
    tmp_path: Path, store_url: str
) -> None:
    """A one-cent budget fits 23 tokens for each of 200 prompts, not 4,700 for one."""
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": ["Say hi"] * 200, "max_tokens": 200}
    plan = "degrade:\n  - {when: {does_not_fit: true}, set: {fit: {min_tokens: 1}}}"
    async with local_stack(fields_policy(tmp_path, limit="0.01", plan=plan), store=store_url) as s:
        status, answer, headers = await post(s, COMPLETIONS, body)
        assert status == 200, answer
        fitted = s.fake.requests[0][2]["max_tokens"]
        assert headers["X-Cycles-Caps"] == f"max_tokens={fitted}"
        # 400 prompt tokens at $1.50/M, 200 choices at $2/M: (1,000,000 − 60,000) / 40,000.
        assert fitted == 23
        call = await one_call(s)
        assert call.reserved <= CENT
        assert (await spent(s))[0] <= CENT


async def test_tokens_per_minute_counts_every_choice_of_a_batch(
    tmp_path: Path, store_url: str
) -> None:
    """200 prompts × 200 tokens + 400 prompt tokens is 40,400 tokens, over a 40,000 quota."""
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": ["Say hi"] * 200, "max_tokens": 200}
    pol = fields_policy(tmp_path, limit="1", plan="quotas: {tokens_per_minute: 40000}")
    async with local_stack(pol, store=store_url) as stack:
        status, answer, _ = await post(stack, COMPLETIONS, body)
        assert status == 429, answer
        assert answer["error"]["code"] == "tokens_per_minute"
        await assert_refused_and_nothing_changed(stack)


async def test_an_empty_batch_is_400(tmp_path: Path) -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": [], "max_tokens": 5}
    async with local_stack(fields_policy(tmp_path)) as stack:
        status, answer, _ = await post(stack, COMPLETIONS, body)
        assert status == 400 and answer["error"]["param"] == "prompt"
        await assert_refused_and_nothing_changed(stack)


# -- (3) zero and conflicting limits --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fields", "param"),
    [
        (CHAT, {"max_completion_tokens": 0, "max_tokens": 5000}, "max_completion_tokens"),
        (CHAT, {"max_completion_tokens": 0}, "max_completion_tokens"),
        (CHAT, {"max_completion_tokens": None, "max_tokens": 0}, "max_tokens"),
        (CHAT, {"max_completion_tokens": 100, "max_tokens": -1}, "max_tokens"),
        (CHAT, {"max_completion_tokens": 2.5}, "max_completion_tokens"),
        (CHAT, {"max_completion_tokens": "100"}, "max_completion_tokens"),
        (COMPLETIONS, {"max_tokens": 0}, "max_tokens"),
        ("/v1/responses", {"max_output_tokens": 0}, "max_output_tokens"),
        ("/v1/messages", {"max_tokens": 0}, "max_tokens"),
    ],
)
async def test_a_limit_that_is_not_a_positive_integer_is_400(
    tmp_path: Path, store_url: str, path: str, fields: dict[str, Any], param: str
) -> None:
    """0 would reach the provider as "no limit" (its default, or the other field)."""
    endpoint = {CHAT: "chat", COMPLETIONS: "completions"}.get(path, path.rsplit("/", 1)[1])
    body = {k: v for k, v in {**BODIES[endpoint], **fields}.items() if v is not None}
    async with local_stack(fields_policy(tmp_path), store=store_url) as stack:
        status, answer, _ = await post(stack, path, body)
        assert status == 400, answer
        error = answer["error"]
        assert f"'{param}' must be an integer of at least 1" in error["message"]
        await assert_refused_and_nothing_changed(stack)


@pytest.mark.parametrize(
    ("model", "fields", "sent"),
    [
        (
            "gpt-4o-mini",
            {"max_completion_tokens": 100, "max_tokens": 5000},
            "max_completion_tokens",
        ),
        (
            "gpt-4o-mini",
            {"max_completion_tokens": 5000, "max_tokens": 100},
            "max_completion_tokens",
        ),
        ("gpt-4o-mini", {"max_tokens": 100}, "max_tokens"),
        ("o3-mini", {"max_tokens": 100}, "max_completion_tokens"),
        ("o3-mini", {"max_completion_tokens": 5000, "max_tokens": 100}, "max_completion_tokens"),
        # A server that takes max_tokens, while the fake (as vLLM) reads max_completion_tokens
        # first: left in, the 5000 would be billed.
        ("old-server-model", {"max_completion_tokens": 5000, "max_tokens": 100}, "max_tokens"),
        ("old-server-model", {"max_completion_tokens": 100}, "max_tokens"),
    ],
)
@pytest.mark.parametrize("tenant", ["alpha", "gamma"], ids=["enforced", "shadow"])
async def test_exactly_one_limit_field_goes_up_holding_the_reserved_bound(
    tmp_path: Path, store_url: str, model: str, fields: dict[str, Any], sent: str, tenant: str
) -> None:
    """Both fields sent: the smaller, in the field the model takes; the other is taken out."""
    body = {"model": model, "messages": [{"role": "user", "content": "Say hi"}], **fields}
    async with local_stack(fields_policy(tmp_path), store=store_url) as stack:
        status, answer, _ = await post(stack, CHAT, body, {"X-Cycles-Tenant": tenant})
        assert status == 200, answer
        up = stack.fake.requests[0][2]
        limits = {k: v for k, v in up.items() if k in ("max_tokens", "max_completion_tokens")}
        assert limits == {sent: 100}
        assert stack.fake.billed[0].completion_tokens == 100
        await one_call(stack, tenant)


async def test_max_tokens_per_request_is_the_one_limit_of_a_conflicting_request(
    tmp_path: Path, store_url: str
) -> None:
    body = {**BODIES["chat"], "max_completion_tokens": 4000, "max_tokens": 5000}
    pol = fields_policy(tmp_path, plan="quotas: {max_tokens_per_request: 50}")
    async with local_stack(pol, store=store_url) as stack:
        status, answer, _ = await post(stack, CHAT, body)
        assert status == 200, answer
        up = stack.fake.requests[0][2]
        assert up["max_completion_tokens"] == 50 and "max_tokens" not in up
        await one_call(stack)


async def test_a_limit_field_of_another_api_is_taken_out_when_unknown_fields_are_forwarded(
    tmp_path: Path, store_url: str
) -> None:
    """`request_fields: forward` sends fields the proxy does not know, but never a second
    limit that some server might read instead of the one reserved."""
    body = {**BODIES["chat"], "max_output_tokens": 9000, "guided_choice": ["yes", "no"]}
    pol = fields_policy(tmp_path, top="request_fields: forward")
    async with local_stack(pol, store=store_url) as stack:
        status, answer, _ = await post(stack, CHAT, body)
        assert status == 200, answer
        up = stack.fake.requests[0][2]
        assert up["guided_choice"] == ["yes", "no"] and "max_output_tokens" not in up
        await one_call(stack)


# -- (7) best_of on chat ---------------------------------------------------------------------------


async def test_best_of_on_chat_is_reserved_for_every_candidate(
    tmp_path: Path, store_url: str
) -> None:
    """vLLM takes best_of on chat and the fake bills it: 20 candidates of 10 tokens, not 1."""
    body = {**BODIES["chat"], "max_completion_tokens": 10, "best_of": 20}
    async with local_stack(fields_policy(tmp_path), store=store_url) as stack:
        status, answer, _ = await post(stack, CHAT, body)
        assert status == 200, answer
        assert len(answer["choices"]) == 1
        assert stack.fake.billed[0].completion_tokens == 200
        await one_call(stack)


async def test_best_of_on_chat_past_the_budget_is_refused(tmp_path: Path, store_url: str) -> None:
    # 200 completion tokens at $0.60/M are 12,000 units, over a budget of 10,000.
    body = {**BODIES["chat"], "max_completion_tokens": 10, "best_of": 20}
    async with local_stack(fields_policy(tmp_path, limit="0.0001"), store=store_url) as stack:
        status, answer, _ = await post(stack, CHAT, body)
        assert status == 402, answer
        await assert_refused_and_nothing_changed(stack)


async def test_best_of_on_a_chat_stream_is_400(tmp_path: Path) -> None:
    body = {**BODIES["chat"], "best_of": 3, "stream": True}
    async with local_stack(fields_policy(tmp_path)) as stack:
        status, answer, _ = await post(stack, CHAT, body)
        assert status == 400 and answer["error"]["param"] == "best_of"
        await assert_refused_and_nothing_changed(stack)


@pytest.mark.parametrize("takes", [True, False], ids=["vllm-like", "ignores-best-of"])
async def test_best_of_on_chat_is_billed_only_by_a_server_that_takes_it(
    tmp_path: Path, store_url: str, takes: bool
) -> None:
    """The fake takes best_of on chat as vLLM does, or ignores it as OpenAI's chat API has no
    such field: the reservation covers both, and the charge is what was billed."""
    body = {**BODIES["chat"], "max_completion_tokens": 10, "best_of": 4}
    fake = FakeUpstream(FakeSettings(chat_best_of=takes))
    async with local_stack(fields_policy(tmp_path), store=store_url, fake=fake) as stack:
        status, answer, _ = await post(stack, CHAT, body)
        assert status == 200, answer
        assert fake.billed[0].completion_tokens == (40 if takes else 10)
        [call] = await books(stack)
        assert call.billed == call.charged <= call.reserved


@pytest.mark.parametrize("best_of", ["3", 2.5, True, -1, [3]])
async def test_a_best_of_that_is_not_a_positive_integer_is_400_and_the_fake_survives_it(
    tmp_path: Path, best_of: Any
) -> None:
    """The proxy refuses it before anything is reserved; the fake, sent it directly, bills one
    candidate rather than failing (a server refuses or ignores what it cannot read)."""
    body = {**BODIES["chat"], "max_completion_tokens": 10, "best_of": best_of}
    async with local_stack(fields_policy(tmp_path)) as stack:
        status, answer, _ = await post(stack, CHAT, body)
        assert status == 400 and answer["error"]["param"] == "best_of", answer
        await assert_refused_and_nothing_changed(stack)
    fake = FakeUpstream()
    key = {"Authorization": f"Bearer {fake.settings.api_key}"}
    async with (
        serving(fake.app()) as url,
        aiohttp.ClientSession() as http,
        http.post(url + CHAT, json=body, headers=key) as direct,
    ):
        assert direct.status == 200, await direct.text()
    assert fake.billed[0].completion_tokens == 10
