"""Upstreams that refuse `stream_options` (older vLLM, some Azure API versions), marked
`include_usage: false`: no stream_options goes up (the client's is taken out too), and a stream is
settled on usage the upstream reports by itself (vLLM's continuous usage: running totals, the last
report wins) or, without any, on the counted text."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from breadth_support import VLLM, breadth_policy, cost, sdk, sent_bodies
from support import settled

from proxy.policy.runtime import Policy
from proxy.testing.fake_upstream import WORD, FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

MESSAGES = [{"role": "user", "content": "List three colours."}]
MODEL = "llama-3.1-8b"


def vllm_policy(tmp_path: Path, upstreams: str = VLLM) -> Policy:
    return breadth_policy(
        tmp_path,
        upstreams=upstreams,
        routes='- {model: "llama-*", upstream: vllm}',
        models="llama-3.1-8b: {input: 0.10, output: 0.20}",
    )


def refusing(**settings: object) -> FakeUpstream:
    return FakeUpstream(FakeSettings(reject_stream_options=True, **settings))  # type: ignore[arg-type]


async def test_without_the_mark_the_upstream_refuses_and_nothing_is_charged(
    tmp_path: Path,
) -> None:
    """What the mark is for: the proxy's own include_usage is refused by such an upstream."""
    pol = vllm_policy(tmp_path, VLLM.replace(", include_usage: false", ""))
    async with local_stack(pol, fake=refusing()) as stack:
        async with sdk(stack, max_retries=0) as client:
            with pytest.raises(openai.BadRequestError) as raised:
                await client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, max_tokens=10, stream=True
                )  # type: ignore[arg-type]
        assert "stream_options" in str(raised.value)
        assert stack.fake.billed == []
        row = await settled(stack.ledger)
        assert (row.spent, row.reserved) == (0, 0)


@pytest.mark.parametrize("client_asks", [False, True])
async def test_stream_is_settled_on_the_counted_text(
    tmp_path: Path, store_url: str, client_asks: bool
) -> None:
    async with local_stack(vllm_policy(tmp_path), store=store_url, fake=refusing()) as stack:
        asked = {"stream_options": {"include_usage": True}} if client_asks else {}
        async with sdk(stack) as client:
            stream = await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=15, stream=True, **asked
            )  # type: ignore[call-overload]
            chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == WORD * 15
        assert "stream_options" not in sent_bodies(stack)[0]
        row = await settled(stack.ledger)
        # The prompt as reserved, at the price of a cache write: no report says it was not.
        assert row.spent == cost(MODEL, cache_write=stack.fake.billed[0].prompt_tokens, output=15)


async def test_continuous_usage_is_taken_as_the_last_report_never_summed(
    tmp_path: Path, store_url: str
) -> None:
    # Every chunk carries the running total; the last one also counts 7 reasoning tokens that
    # were never streamed, so neither the counted text (20) nor a sum of reports would match.
    fake = refusing(continuous_usage=True, reasoning_tokens=7, chunks=4)
    async with local_stack(vllm_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with sdk(stack) as client:
            stream = await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=20, stream=True
            )  # type: ignore[arg-type]
            chunks = [chunk async for chunk in stream]
        reports = [c.usage.completion_tokens for c in chunks if c.usage is not None]
        assert reports == [5, 10, 15, 27]
        prompt = fake.billed[0].prompt_tokens
        row = await settled(stack.ledger)
        assert row.spent == cost(MODEL, input=prompt, output=27)


async def test_whole_answers_are_unaffected(tmp_path: Path, store_url: str) -> None:
    async with local_stack(vllm_policy(tmp_path), store=store_url, fake=refusing()) as stack:
        async with sdk(stack) as client:
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6)  # type: ignore[arg-type]
        row = await settled(stack.ledger)
        assert row.spent == cost(MODEL, input=stack.fake.billed[0].prompt_tokens, output=6)
