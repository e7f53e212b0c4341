"""OpenAI-compatible self-hosted upstreams (vLLM, Ollama): model names clients use mapped to the
server's own names and to the price entries they are budgeted by, and budgets in TOKENS for
models that cost nothing per token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from breadth_support import breadth_policy, sdk, sent_bodies
from support import settled

from proxy.core.errors import PolicyError
from proxy.policy.runtime import Policy
from proxy.testing.fake_upstream import WORD
from proxy.testing.local import local_stack

LOCAL = """
local:
  base_url: "http://vllm.internal:8000/v1"
  models:
    llama3: {send: "meta-llama/Llama-3.1-8B-Instruct", price: llama-3.1-8b}
    qwen: "qwen2.5:7b-instruct"
"""
MODELS = """
llama-3.1-8b: {input: 0, output: 0}
qwen: {input: 0, output: 0}
"""
MESSAGES: Any = [{"role": "user", "content": "Name a prime number."}]


def local_policy(tmp_path: Path, limit: int = 100_000) -> Policy:
    return breadth_policy(
        tmp_path,
        upstreams=LOCAL,
        models=MODELS,
        budgets=f"tenant: {{limit: {limit}, period: month, unit: TOKENS}}",
    )


async def test_alias_is_sent_under_the_servers_name_and_budgeted_in_tokens(
    tmp_path: Path, store_url: str
) -> None:
    async with local_stack(local_policy(tmp_path), store=store_url) as stack:
        async with sdk(stack) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="llama3", messages=MESSAGES, max_tokens=16
            )
            stream = await client.chat.completions.create(
                model="qwen", messages=MESSAGES, max_tokens=8, stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert raw.parse().choices[0].message.content == WORD * 16
        assert text == WORD * 8
        first, second = sent_bodies(stack)
        assert first["model"] == "meta-llama/Llama-3.1-8B-Instruct"
        assert second["model"] == "qwen2.5:7b-instruct"
        used = sum(b.prompt_tokens + b.completion_tokens for b in stack.fake.billed)
        row = await settled(stack.ledger, unit="TOKENS")
        assert (row.spent, row.reserved) == (used, 0)
        assert raw.headers["x-cycles-remaining"].endswith(" TOKENS")
        assert all(r.unit == "TOKENS" for r in await stack.ledger.balances("alpha"))


async def test_tokens_budget_denies_what_would_not_fit(tmp_path: Path, store_url: str) -> None:
    async with local_stack(local_policy(tmp_path, limit=150), store=store_url) as stack:
        async with sdk(stack) as client:
            await client.chat.completions.create(model="llama3", messages=MESSAGES, max_tokens=100)
            with pytest.raises(openai.APIStatusError) as raised:
                await client.chat.completions.create(
                    model="llama3", messages=MESSAGES, max_tokens=100
                )
        assert raised.value.status_code == 402
        billed = stack.fake.billed
        assert len(billed) == 1
        row = await settled(stack.ledger, unit="TOKENS")
        assert row.spent == billed[0].prompt_tokens + 100


@pytest.mark.parametrize(
    ("upstreams", "models", "message"),
    [
        (LOCAL, "qwen: {input: 0, output: 0}", "priced as 'llama-3.1-8b'"),
        (
            LOCAL + "other: {base_url: 'http://other/v1', models: {qwen: q}}",
            MODELS,
            "already a model name of upstream 'local'",
        ),
        ("local: {base_url: 'http://x/v1', deployments: {d: qwen}}", MODELS, "kind: azure"),
        (
            "az: {kind: azure, base_url: 'http://x/openai', models: {q: qwen}}",
            MODELS,
            "deployments",
        ),
    ],
)
def test_bad_model_names_are_policy_errors(
    tmp_path: Path, upstreams: str, models: str, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        breadth_policy(tmp_path, upstreams=upstreams, models=models)


def test_check_prints_the_names_sent_and_priced(tmp_path: Path) -> None:
    from proxy.policy.describe import describe

    text = describe(local_policy(tmp_path))
    assert "llama3 → sent as meta-llama/Llama-3.1-8B-Instruct, priced as llama-3.1-8b" in text
    assert "qwen → sent as qwen2.5:7b-instruct\n" in text
