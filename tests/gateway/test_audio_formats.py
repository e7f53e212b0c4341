"""Chat `input_audio` the proxy cannot time is refused (issue 13, second review): a provider that
decodes with ffmpeg plays a big-endian RIFX WAV, a WAV after an ID3 tag, and a WAV of GSM 6.10
(320 samples in each 65-byte block) at durations the header's rates do not give, and decoders
differ on which of two `fmt ` chunks times a WAV. Each is 1 Hz audio, billed 10 tokens a second
and reserved as a fraction of that, so each is refused with 400 `unpriced_feature` naming the
part and what to send instead (mp3, or a PCM WAV with one `fmt ` chunk), whatever its `format`
says, and nothing is reserved or sent. An mp3 passes, reserved as the length of its base64.

The fake provider bills a WAV by the audio bytes it holds, never by the size its header claims:
a WAV whose `data` chunk says an hour and holds ten seconds is billed, and reserved, ten seconds.

Each call runs with the real openai SDK on both stores; the fake is the oracle of the calls that
pass: billed <= charged <= reserved."""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any, Literal

import openai
import prices_support
import pytest
from prices_support import billed_cost, measured_call, prices_policy, tenant_row

from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

HOUR = 3600
Format = Literal["wav", "mp3"]
PART = "messages[0].content[1]"
SILENCE = b"\x80" * HOUR
"""An hour at 1 Hz, 8-bit mono: billed 36,000 tokens."""


def fmt(rate: int, tag: int = 1, block: int = 1, bits: int = 8, extra: bytes = b"") -> bytes:
    fields = struct.pack("<HHIIHH", tag, 1, rate, rate * block, block, bits) + extra
    return b"fmt " + struct.pack("<I", len(fields)) + fields


def data(payload: bytes, size: int | None = None) -> bytes:
    return b"data" + struct.pack("<I", len(payload) if size is None else size) + payload


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def rifx() -> bytes:
    """The big-endian WAV: ffmpeg's wavdec reads it."""
    body = b"WAVE" + b"fmt " + struct.pack(">I", 16) + struct.pack(">HHIIHH", 1, 1, 1, 1, 1, 8)
    body += b"data" + struct.pack(">I", HOUR) + SILENCE
    return b"RIFX" + struct.pack(">I", len(body)) + body


GSM_BLOCKS = 113
"""113 blocks of GSM 6.10 at 1 Hz: 36,160 seconds played, 7,345 bytes."""
GSM = riff(
    fmt(1, tag=0x31, block=65, bits=0, extra=struct.pack("<HH", 2, 320)),
    b"fact" + struct.pack("<II", 4, 320 * GSM_BLOCKS),
    data(bytes(65 * GSM_BLOCKS)),
)
MP3 = b"\xff\xfb\x90\x64" + bytes(413)
"""An MPEG-1 layer III frame, 128 kbps: 26 ms."""


def module() -> bytes:
    """A ProTracker module (magic `M.K.` at byte 1080) whose free title begins with an MPEG
    frame header: a decoder with libopenmpt plays it for hours, at its slowest speed."""
    title = MP3[:4] + b"tune".ljust(16, b"\0")
    row = bytes([0, 0, 0x0F, 0x1F, 0, 0, 0x0F, 0x20, 0, 0, 0x0E, 0xEF, 0, 0, 0, 0])
    return title + bytes(31 * 30) + bytes([128, 127]) + bytes(128) + b"M.K." + row * 64


REFUSED = {
    "rifx": (rifx(), "is neither an mp3 nor a PCM WAV"),
    "module-behind-a-frame-sync": (module(), "is neither an mp3 nor a PCM WAV"),
    "frames-then-zeros": (MP3 * 3 + bytes(1000), "is neither an mp3 nor a PCM WAV"),
    "id3-then-riff": (b"ID3\x04" + bytes(6) + riff(fmt(1), data(SILENCE)), "is neither an mp3"),
    "gsm-in-wav": (GSM, "is a WAV of codec 0x0031"),
    "second-fmt": (
        riff(fmt(8000), data(b""), fmt(1), data(SILENCE)),
        "is a WAV of more than one `fmt ` chunk",
    ),
}


async def transcribe(stack: Stack, audio: bytes, audio_format: Format = "wav") -> Any:
    encoded = base64.b64encode(audio).decode()
    return await prices_support.transcribe(stack.url, encoded, audio_format)


@pytest.mark.parametrize("audio_format", ["wav", "mp3"])
@pytest.mark.parametrize("case", REFUSED)
async def test_audio_the_proxy_cannot_time_is_refused_naming_the_part(
    tmp_path: Path, store_url: str, case: str, audio_format: Format
) -> None:
    audio, says = REFUSED[case]
    fake = FakeUpstream(FakeSettings(latency=0.15))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        with pytest.raises(openai.BadRequestError) as refused:
            await transcribe(stack, audio, audio_format)
        row = await tenant_row(stack.ledger)
    error: Any = refused.value.body
    assert error["code"] == "unpriced_feature" and error["param"] == PART, error
    assert error["message"].startswith(f"{PART} {says}"), error
    assert "Send the audio as mp3, or as a WAV of PCM" in error["message"], error
    assert fake.requests == [] and (row.spent, row.reserved) == (0, 0)


@pytest.mark.parametrize(
    ("audio", "audio_format"),
    [
        pytest.param(MP3 * 40, "mp3", id="mp3"),
        pytest.param(b"ID3\x04" + bytes(6) + MP3 * 40, "mp3", id="mp3-after-an-id3-tag"),
        pytest.param(MP3 * 40, "wav", id="mp3-said-to-be-wav"),
        pytest.param(
            MP3 * 40 + MP3[:100] + b"TAG" + bytes(125), "mp3", id="mp3-cut-short-then-an-id3v1-tag"
        ),
        pytest.param(riff(fmt(1), data(SILENCE[:10], size=HOUR)), "wav", id="wav-said-an-hour"),
        pytest.param(riff(fmt(1), data(SILENCE[:10], size=0)), "wav", id="wav-of-size-0"),
    ],
)
async def test_audio_the_proxy_can_time_is_reserved_for_what_is_billed(
    tmp_path: Path, store_url: str, audio: bytes, audio_format: Format
) -> None:
    fake = FakeUpstream(FakeSettings(latency=0.15))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(
            stack.ledger, transcribe(stack, audio, audio_format)
        )
    [billed] = fake.billed
    assert billed.audio_prompt_tokens <= 100, billed  # ten seconds at most
    assert billed_cost(billed) <= charged <= reserved, (billed_cost(billed), charged, reserved)
