"""Per-model request rules through the openai SDK: reasoning models (o-series, gpt-5) take only
`max_completion_tokens`, and the fake provider refuses `max_tokens` for them as OpenAI does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp
import pytest
from breadth_support import HEADERS, breadth_policy, cost, sdk, sent_bodies
from support import settled

from proxy.core.errors import PolicyError
from proxy.policy.model_rules import default_limit_field
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.local import local_stack, serving

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "Think, then answer: 2 + 2?"}]


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("o1", "max_completion_tokens"),
        ("o3-mini", "max_completion_tokens"),
        ("o4-mini-2025-04-16", "max_completion_tokens"),
        ("gpt-5", "max_completion_tokens"),
        ("gpt-5-mini", "max_completion_tokens"),
        ("gpt-4o", None),
        ("omni-moderation", None),
        ("llama3", None),
    ],
)
def test_reasoning_models_take_max_completion_tokens_by_name(model: str, field: str | None) -> None:
    assert default_limit_field(model) == field


async def test_the_fake_provider_refuses_max_tokens_for_a_reasoning_model() -> None:
    fake = FakeUpstream()
    async with serving(fake.app()) as url, aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {fake.settings.api_key}"}
        body = {"model": "o3-mini", "messages": MESSAGES, "max_tokens": 5}
        async with http.post(url + "/v1/chat/completions", json=body, headers=auth) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "unsupported_parameter"
    assert fake.billed == []


async def test_clients_max_tokens_is_moved_to_max_completion_tokens(
    tmp_path: Path, store_url: str
) -> None:
    async with local_stack(breadth_policy(tmp_path), store=store_url) as stack:
        async with sdk(stack) as client:
            answer = await client.chat.completions.create(
                model="o3-mini", messages=MESSAGES, max_tokens=20
            )  # type: ignore[arg-type]
        assert answer.usage is not None and answer.usage.completion_tokens == 20
        sent = sent_bodies(stack)[0]
        assert sent["max_completion_tokens"] == 20 and "max_tokens" not in sent
        billed = stack.fake.billed[0]
        row = await settled(stack.ledger)
        assert row.spent == cost("o3-mini", input=billed.prompt_tokens, output=20)


async def test_bound_written_for_a_reasoning_model_is_max_completion_tokens(
    tmp_path: Path,
) -> None:
    async with local_stack(breadth_policy(tmp_path)) as stack:
        async with sdk(stack) as client:
            stream = await client.chat.completions.create(
                model="o3-mini", messages=MESSAGES, stream=True
            )  # type: ignore[arg-type]
            chunks = [chunk async for chunk in stream]
        assert chunks
        sent = sent_bodies(stack)[0]
        assert sent["max_completion_tokens"] == 100 and "max_tokens" not in sent
        row = await settled(stack.ledger)
        assert row.spent == cost("o3-mini", input=stack.fake.billed[0].prompt_tokens, output=100)


async def test_degrade_to_a_reasoning_model_rewrites_the_limit_field(tmp_path: Path) -> None:
    pol = breadth_policy(
        tmp_path,
        plan="""
        degrade:
          - {when: {scope: tenant, remaining_below: 1000}, set: {model: o3-mini, max_tokens: 8}}
        """,
    )
    async with local_stack(pol) as stack:
        async with sdk(stack) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=MESSAGES, max_tokens=30
            )  # type: ignore[arg-type]
        assert raw.headers["x-cycles-caps"] == "model=o3-mini; max_tokens=8"
        sent = sent_bodies(stack)[0]
        assert (sent["model"], sent["max_completion_tokens"]) == ("o3-mini", 8)
        assert "max_tokens" not in sent
        row = await settled(stack.ledger)
        assert row.spent == cost("o3-mini", input=stack.fake.billed[0].prompt_tokens, output=8)


async def test_a_model_that_takes_only_max_tokens_gets_it(tmp_path: Path) -> None:
    """An older OpenAI-compatible server: `limit_field: max_tokens` moves the other way."""
    pol = breadth_policy(
        tmp_path, models="old-server-model: {input: 1, output: 2, limit_field: max_tokens}"
    )
    async with local_stack(pol) as stack:
        async with sdk(stack) as client:
            await client.chat.completions.create(
                model="old-server-model", messages=MESSAGES, max_completion_tokens=12
            )  # type: ignore[arg-type]
            await client.chat.completions.create(model="old-server-model", messages=MESSAGES)  # type: ignore[arg-type]
        first, second = sent_bodies(stack)
        assert first["max_tokens"] == 12 and "max_completion_tokens" not in first
        assert second["max_tokens"] == 100 and "max_completion_tokens" not in second


async def test_shadow_mode_still_moves_the_limit(tmp_path: Path) -> None:
    """Shadow mode rewrites nothing for budgets, but a call the model would refuse is not a
    call worth shadowing: the limit is moved there too."""
    policy = dataclasses.replace(breadth_policy(tmp_path), mode="shadow")
    async with local_stack(policy) as stack:
        async with sdk(stack) as client:
            await client.chat.completions.create(model="o3-mini", messages=MESSAGES, max_tokens=7)  # type: ignore[arg-type]
        sent = sent_bodies(stack)[0]
        assert sent["max_completion_tokens"] == 7 and "max_tokens" not in sent


def test_unknown_limit_field_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="limit_field"):
        breadth_policy(tmp_path, models="m: {input: 1, output: 1, limit_field: max_output}")


async def test_bad_limit_is_400_and_nothing_reserved(tmp_path: Path) -> None:
    async with local_stack(breadth_policy(tmp_path)) as stack, aiohttp.ClientSession() as http:
        body = {"model": "o3-mini", "messages": MESSAGES, "max_tokens": "lots"}
        async with http.post(stack.url + "/v1/chat/completions", json=body, headers=HEADERS) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert error["param"] == "max_tokens" and "integer" in error["message"]
        assert stack.fake.calls == 0 and await stack.ledger.balances("alpha") == []
