"""What providers report beyond prompt and completion totals, priced exactly through the openai
SDK: cached tokens at the cached price, reasoning tokens once at the output price, audio tokens at
the audio prices; and `best_of` on /v1/completions, reserved and billed for every candidate."""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from breadth_support import HEADERS, breadth_policy, cost, sdk, sent_bodies
from support import settled

from proxy.budget.call import prepare
from proxy.budget.endpoints import ENDPOINTS
from proxy.metering.pricing import cost_units
from proxy.metering.usage import parse_usage
from proxy.policy.prices import ModelPrice
from proxy.testing.fake_upstream import WORD, FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Think it through: 17 * 23?"}]
AUDIO = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA="


def wav(seconds: int, rate: int = 8000) -> str:
    """A silent 8-bit mono WAV file, base64."""
    data = b"\x80" * (rate * seconds)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    chunks = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return base64.b64encode(b"RIFF" + struct.pack("<I", len(chunks)) + chunks).decode()


async def test_reasoning_tokens_are_billed_once_at_the_output_price(
    tmp_path: Path, store_url: str
) -> None:
    # 50 visible tokens + 30 reasoning tokens = 80 completion tokens, 80 priced, not 110.
    fake = FakeUpstream(FakeSettings(completion_fraction=0.5, reasoning_tokens=30))
    async with local_stack(breadth_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with sdk(stack) as client:
            answer = await client.chat.completions.create(
                model="o3-mini", messages=MESSAGES, max_completion_tokens=100
            )  # type: ignore[arg-type]
        assert answer.usage is not None and answer.usage.completion_tokens == 80
        details = answer.usage.completion_tokens_details
        assert details is not None and details.reasoning_tokens == 30
        assert answer.choices[0].message.content == WORD * 50
        prompt = fake.billed[0].prompt_tokens
        row = await settled(stack.ledger)
        assert row.spent == cost("o3-mini", input=prompt, output=80)
        assert row.spent < cost("o3-mini", input=prompt, output=110)


async def test_streamed_reasoning_tokens_are_charged_from_the_usage_chunk(
    tmp_path: Path, store_url: str
) -> None:
    """Reasoning is never streamed: the 40 streamed tokens are a floor, the report the charge."""
    fake = FakeUpstream(FakeSettings(completion_fraction=0.5, reasoning_tokens=25))
    async with local_stack(breadth_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with sdk(stack) as client:
            stream = await client.chat.completions.create(
                model="o3-mini", messages=MESSAGES, max_completion_tokens=80, stream=True
            )  # type: ignore[arg-type]
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == WORD * 40
        row = await settled(stack.ledger)
        assert row.spent == cost("o3-mini", input=fake.billed[0].prompt_tokens, output=65)


async def test_cached_prompt_tokens_are_charged_at_the_cached_price(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(cached_tokens=9))
    async with local_stack(breadth_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with sdk(stack) as client:
            await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
        prompt = fake.billed[0].prompt_tokens
        row = await settled(stack.ledger)
        assert row.spent == cost("gpt-4o", input=prompt - 9, cached=9, output=10)


async def test_audio_tokens_are_charged_at_the_audio_prices(tmp_path: Path, store_url: str) -> None:
    # Two seconds of audio: the fake bills 20 prompt tokens for them (1 per 100 ms).
    fake = FakeUpstream(FakeSettings(audio_prompt_tokens=20, audio_completion_tokens=40))
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Answer aloud."},
                {"type": "input_audio", "input_audio": {"data": wav(2), "format": "wav"}},
            ],
        }
    ]
    async with local_stack(breadth_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with sdk(stack) as client:
            answer = await client.chat.completions.create(
                model="gpt-4o-audio-preview",
                messages=messages,  # type: ignore[arg-type]
                modalities=["text", "audio"],
                audio={"voice": "alloy", "format": "wav"},
                max_completion_tokens=60,
            )
        assert answer.usage is not None and answer.usage.completion_tokens == 100
        prompt = fake.billed[0].prompt_tokens
        row = await settled(stack.ledger)
        assert row.spent == cost(
            "gpt-4o-audio-preview",
            input=prompt - 20,
            audio_input=20,
            output=60,
            audio_output=40,
        )


def test_audio_calls_are_reserved_at_the_dearer_audio_prices(tmp_path: Path) -> None:
    """The split is unknown before the call, so every token is reserved at the dearer price."""
    pol = breadth_policy(tmp_path)
    body = {
        "model": "gpt-4o-audio-preview",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": AUDIO}}],
            }
        ],
        "modalities": ["text", "audio"],
        "max_completion_tokens": 60,
    }
    plan = pol.plans["test"]
    call = prepare(pol, plan, ENDPOINTS["/v1/chat/completions"], orjson.dumps(body), shadow=False)
    prompt = call.asked.prompt_tokens
    assert call.asked.amounts["USD"] == cost(
        "gpt-4o-audio-preview", audio_input=prompt, audio_output=60
    )
    text_only = {**body, "messages": MESSAGES, "modalities": ["text"]}
    plain = prepare(
        pol, plan, ENDPOINTS["/v1/chat/completions"], orjson.dumps(text_only), shadow=False
    )
    # Text alone: at the price of the cache write OpenAI may bill for it (above input).
    assert plain.asked.amounts["USD"] == cost(
        "gpt-4o-audio-preview", cache_write=plain.asked.prompt_tokens, output=60
    )


def test_image_tokens_reported_apart_are_priced_at_the_image_prices() -> None:
    price = ModelPrice(
        "img", input=500, cached_input=250, output=4000, image_input=1000, image_output=4_000_000
    )
    reported = {
        "prompt_tokens": 300,
        "completion_tokens": 1100,
        "prompt_tokens_details": {"cached_tokens": 100, "image_tokens": 150},
        "completion_tokens_details": {"image_tokens": 1000, "reasoning_tokens": 20},
    }
    usage = parse_usage(reported, "chat")
    assert usage is not None
    assert (usage.cached_tokens, usage.image_prompt_tokens, usage.image_completion_tokens) == (
        100,
        150,
        1000,
    )
    exact = 50 * 500 + 100 * 250 + 150 * 1000 + 100 * 4000 + 1000 * 4_000_000
    assert cost_units(price, usage) == -(-exact // 10**6)


def test_details_above_their_totals_are_clamped() -> None:
    reported = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 50},
        "completion_tokens_details": {"audio_tokens": 9, "image_tokens": True},
    }
    usage = parse_usage(reported, "chat")
    assert usage is not None
    assert (usage.cached_tokens, usage.audio_prompt_tokens, usage.audio_completion_tokens) == (
        8,
        2,
        5,
    )
    assert usage.image_completion_tokens == 0


async def test_best_of_is_reserved_and_billed_for_every_candidate(
    tmp_path: Path, store_url: str
) -> None:
    async with local_stack(breadth_policy(tmp_path), store=store_url) as stack:
        async with sdk(stack) as client:
            raw = await client.completions.with_raw_response.create(
                model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=10, best_of=3
            )
        answer = raw.parse()
        assert len(answer.choices) == 1
        assert answer.usage is not None and answer.usage.completion_tokens == 30
        prompt = stack.fake.billed[0].prompt_tokens
        expected = cost("gpt-3.5-turbo-instruct", input=prompt, output=30)
        row = await settled(stack.ledger)
        assert row.spent == expected
        # The reservation covered the three candidates: 50 USD less exactly this call.
        remaining = int(raw.headers["x-cycles-remaining"].split()[0].replace(".", ""))
        assert remaining == (50 * 10**8 - expected) // 100
        assert sent_bodies(stack)[0]["best_of"] == 3


@pytest.mark.parametrize(
    "extra",
    [{"best_of": 2, "stream": True}, {"best_of": 0}, {"best_of": "3"}],
)
async def test_bad_best_of_is_400_and_nothing_reserved(
    tmp_path: Path, extra: dict[str, Any]
) -> None:
    async with local_stack(breadth_policy(tmp_path)) as stack, aiohttp.ClientSession() as http:
        body = {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "max_tokens": 5, **extra}
        async with http.post(stack.url + "/v1/completions", json=body, headers=HEADERS) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert error["param"] == "best_of" and "best_of" in error["message"]
        assert stack.fake.calls == 0 and await stack.ledger.balances("alpha") == []
