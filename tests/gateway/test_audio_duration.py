"""Input audio is billed by its duration, 10 tokens a second, and a WAV at a low sample rate
takes few bytes a second: 1 Hz, 8-bit mono is 3,644 bytes an hour (4,860 base64 characters)
and is billed 36,000 tokens. It is reserved by the duration its header gives (issue 13), so a
call that could pass the budget is refused before it is sent, and a WAV whose header bounds no
duration is refused with 400 `unpriced_feature`.

Each call runs with the real openai SDK on both stores; the fake provider, which bills audio by
the duration its WAV header gives, is the oracle: billed <= charged <= reserved."""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import openai
import prices_support
import pytest
from prices_support import billed_cost, measured_call, prices_policy, tenant_row

from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

HOUR = 3600
PART = "messages[0].content[1]"


def wav(seconds: int, rate: int, **header: int) -> str:
    """A silent 8-bit mono PCM WAV at `rate` Hz, all of its data present, base64; `header`
    overrides what its `fmt ` chunk says (`sample_rate`, `byte_rate`)."""
    data = b"\x80" * (rate * seconds)
    said = {"sample_rate": rate, "byte_rate": rate, **header}
    fmt = struct.pack("<HHIIHH", 1, 1, said["sample_rate"], said["byte_rate"], 1, 8)
    chunks = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return base64.b64encode(b"RIFF" + struct.pack("<I", len(chunks)) + chunks).decode()


async def transcribe(stack: Stack, audio: str) -> Any:
    return await prices_support.transcribe(stack.url, audio)


async def test_a_low_rate_wav_is_reserved_for_the_duration_it_is_billed(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=0.15))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(stack.ledger, transcribe(stack, wav(HOUR, 1)))
    [billed] = fake.billed
    assert billed.audio_prompt_tokens == HOUR * 10, billed
    assert billed_cost(billed) <= charged <= reserved, (billed_cost(billed), charged, reserved)


async def test_a_call_whose_audio_would_pass_the_budget_is_refused_before_it_is_sent(
    tmp_path: Path, store_url: str
) -> None:
    """The hour is billed $1.44 at $40 per 1M audio tokens: a $0.50 budget cannot hold it."""
    fake = FakeUpstream(FakeSettings(latency=0.15))
    policy = prices_policy(tmp_path, limit="0.50")
    async with local_stack(policy, store=store_url, fake=fake) as stack:
        with pytest.raises(openai.APIStatusError) as refused:
            await transcribe(stack, wav(HOUR, 1))
        row = await tenant_row(stack.ledger)
    assert refused.value.status_code == 402, refused.value
    assert fake.requests == [] and (row.spent, row.reserved) == (0, 0)


@pytest.mark.parametrize("field", ["byte_rate", "sample_rate"])
async def test_a_wav_whose_header_bounds_no_duration_is_refused(
    tmp_path: Path, store_url: str, field: str
) -> None:
    audio = wav(HOUR, 1, **{field: 0})
    fake = FakeUpstream(FakeSettings(latency=0.15))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        with pytest.raises(openai.BadRequestError) as refused:
            await transcribe(stack, audio)
        row = await tenant_row(stack.ledger)
    error: Any = refused.value.body
    assert error["code"] == "unpriced_feature" and error["param"] == PART, error
    assert "Fix the WAV header" in error["message"], error
    assert fake.requests == [] and (row.spent, row.reserved) == (0, 0)
