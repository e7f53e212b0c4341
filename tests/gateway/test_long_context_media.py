"""A prompt above a model's long-context threshold is billed its text at the long-context prices,
but its audio and image tokens keep their own prices (testing/fake_billing.py): so a long call
carrying media, or asking for audio back, is reserved with the long-context input and output raised
to those media prices, as a short one is, and charged what the provider billed.

tests/prices_support.py's gpt-audio-long: $2.50 input, $10 output; audio $40 in, $80 out;
images $20 in; above 2,000 prompt tokens $5 input and $15 output. Its audio prices are far above
its long-context ones, so a reservation that dropped the raise above the threshold would hold
less than the provider bills."""

from __future__ import annotations

import base64
import math
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from prices_support import (
    HEADERS,
    LONG_ABOVE,
    UNITS,
    billed_cost,
    measured_call,
    prices_policy,
)

from proxy.budget.call import prepare
from proxy.budget.endpoints import ENDPOINTS
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

MODEL = "gpt-audio-long"
LATENCY = 0.15
LONG_TEXT = "Read the whole contract aloud, clause by clause, slowly and clearly. " * 160
"""About 2,100 tokens: above the threshold (2,000) by itself."""
LIMIT = 2000
"""Completion tokens asked: the fake generates half (1,000) and voices half of those."""
AUDIO_IN, AUDIO_OUT, IMAGE_IN, LONG_OUT = Decimal(40), Decimal(80), Decimal(20), Decimal(15)
"""USD per 1M tokens, as prices_support's policy lists them."""


def wav(seconds: int, rate: int = 100) -> str:
    """A silent 8-bit mono WAV file, base64: the provider bills 10 tokens a second of it."""
    data = b"\x80" * (rate * seconds)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    chunks = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return base64.b64encode(b"RIFF" + struct.pack("<I", len(chunks)) + chunks).decode()


def png() -> str:
    """The header of a 1024 x 1024 PNG, as a data URL: enough for its size to be read."""
    ihdr = struct.pack(">II", 1024, 1024) + b"\x08\x06\x00\x00\x00"
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"
    return "data:image/png;base64," + base64.b64encode(head).decode()


PARTS: dict[str, dict[str, Any]] = {
    "audio": {"type": "input_audio", "input_audio": {"data": wav(1), "format": "wav"}},
    "image": {"type": "image_url", "image_url": {"url": png()}},
}


def messages(part: str) -> list[dict[str, Any]]:
    """The long text, then a user turn with one media part."""
    return [
        {"role": "system", "content": LONG_TEXT},
        {"role": "user", "content": [{"type": "text", "text": "And this:"}, PARTS[part]]},
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_long_prompt_with_audio_in_and_out_is_reserved_above_what_it_is_billed(
    tmp_path: Path, store_url: str, stream: bool
) -> None:
    settings = FakeSettings(latency=LATENCY, completion_fraction=0.5, long_context_above=LONG_ABOVE)
    fake = FakeUpstream(settings)
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        openai.AsyncOpenAI(
            base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS
        ) as client,
    ):

        async def call() -> None:
            answer = await client.chat.completions.create(
                model=MODEL,
                messages=messages("audio"),  # type: ignore[arg-type]
                modalities=["text", "audio"],
                audio={"voice": "alloy", "format": "wav"},
                max_completion_tokens=LIMIT,
                stream=stream,  # type: ignore[call-overload]
            )
            if stream:
                _ = [chunk async for chunk in answer]  # type: ignore[union-attr]

        _, reserved, charged = await measured_call(stack.ledger, call())
    [billed] = fake.billed
    assert billed.long_context and billed.prompt_tokens > LONG_ABOVE, billed
    # One second of audio in; half the answer's 1,000 tokens voiced.
    assert (billed.audio_prompt_tokens, billed.audio_completion_tokens) == (10, 500), billed
    assert billed_cost(billed) == charged <= reserved, (billed, charged, reserved)


@pytest.mark.parametrize(("part", "price"), [("audio", AUDIO_IN), ("image", IMAGE_IN)])
def test_a_long_prompt_with_media_reserves_every_prompt_token_at_the_media_price(
    tmp_path: Path, part: str, price: Decimal
) -> None:
    """The split of a prompt is unknown before the call: above the threshold too, every prompt
    token is reserved at the dearest price it may be billed at (the media one), and the output
    at the long-context price (no audio asked back)."""
    pol = prices_policy(tmp_path)
    body = {"model": MODEL, "messages": messages(part), "max_completion_tokens": 100}
    call = prepare(
        pol, pol.plans["test"], ENDPOINTS["/v1/chat/completions"], orjson.dumps(body), shadow=False
    )
    prompt = call.asked.prompt_tokens
    assert prompt > LONG_ABOVE
    per_million = prompt * price + 100 * LONG_OUT
    assert call.asked.amounts["USD"] == math.ceil(per_million * UNITS / 10**6)
