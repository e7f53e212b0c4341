"""Audio inputs (proxy/metering/audio.py): the provider bills 10 tokens a second of audio, so a
WAV is reserved at least its duration's tokens, read from its header however low its rate and
whatever its sizes and byte rate claim; a WAV whose header bounds no duration is refused; any
other audio counts the length of its base64."""

from __future__ import annotations

import base64
import struct

import pytest

from proxy.core.errors import BadRequest
from proxy.metering.audio import input_audio_tokens

HOUR = 3600
PART = "messages[0].content[1]"


def fmt(rate: int, *, byte_rate: int | None = None, block: int = 1, bits: int = 8) -> bytes:
    """A PCM `fmt ` chunk: mono, `rate` samples a second (byte rate = rate × block unless
    given)."""
    per_second = rate * block if byte_rate is None else byte_rate
    fields = struct.pack("<HHIIHH", 1, 1, rate, per_second, block, bits)
    return b"fmt " + struct.pack("<I", len(fields)) + fields


def data(payload: bytes, size: int | None = None) -> bytes:
    """A `data` chunk holding `payload`, its header saying `size` (its length unless given)."""
    return b"data" + struct.pack("<I", len(payload) if size is None else size) + payload


def wav(*chunks: bytes, riff: bytes = b"RIFF") -> str:
    body = b"WAVE" + b"".join(chunks)
    return base64.b64encode(riff + struct.pack("<I", len(body)) + body).decode()


SILENCE = b"\x80" * HOUR
"""An hour at 1 Hz, 8-bit mono: billed 36,000 tokens."""


def test_a_low_rate_wav_is_counted_by_its_duration_not_its_length() -> None:
    audio = wav(fmt(1), data(SILENCE))
    assert len(audio) < 5000
    assert HOUR * 10 <= input_audio_tokens(audio, PART) <= HOUR * 10 + 20


def test_an_ordinary_wav_is_counted_by_its_base64_length() -> None:
    """8 kHz, 8-bit: 8,000 bytes a second, ~10,667 base64 characters for 10 tokens."""
    audio = wav(fmt(8000), data(b"\x80" * 16_000))
    assert input_audio_tokens(audio, PART) == len(audio)


def test_a_wav_whose_base64_ends_in_padding_is_read_to_its_last_byte() -> None:
    """44 bytes, no audio: its `data` header ends in the base64's padded last group."""
    audio = wav(fmt(8000), data(b""))
    assert audio.endswith("=")
    assert input_audio_tokens(audio, PART) == len(audio)


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param((fmt(1, byte_rate=10**6), data(SILENCE)), id="byte-rate-above-sample-rate"),
        pytest.param((fmt(1, bits=8, block=4, byte_rate=4), data(SILENCE)), id="block-above-bits"),
        pytest.param((fmt(1), data(SILENCE, size=0)), id="size-0-read-to-the-end"),
        pytest.param((fmt(1), data(SILENCE, size=0xFFFFFFFF)), id="size-unknown"),
        pytest.param((fmt(1), data(SILENCE, size=10)), id="size-below-the-data"),
        pytest.param((fmt(1), data(SILENCE[:1800]), data(SILENCE[1800:])), id="two-data-chunks"),
        pytest.param((fmt(1_000), fmt(1), data(SILENCE)), id="two-fmt-chunks"),
    ],
)
def test_a_wav_s_duration_is_bounded_whatever_its_header_claims(chunks: tuple[bytes, ...]) -> None:
    """A decoder times PCM by its sample rate and sample size, reads a `data` chunk of size 0
    or 0xFFFFFFFF to the end and goes on into the next one: every byte after the first data
    header counts, at the lowest rate the header gives."""
    assert input_audio_tokens(wav(*chunks), PART) >= HOUR * 10


def test_a_64_bit_wav_and_wrapped_base64_are_read_too() -> None:
    assert input_audio_tokens(wav(fmt(1), data(SILENCE), riff=b"RF64"), PART) >= HOUR * 10
    audio = wav(fmt(1), data(SILENCE))
    wrapped = "\n".join(audio[i : i + 76] for i in range(0, len(audio), 76))
    assert input_audio_tokens(wrapped, PART) >= HOUR * 10


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param((fmt(1, byte_rate=0), data(SILENCE)), id="byte-rate-0"),
        pytest.param((fmt(0, byte_rate=1), data(SILENCE)), id="sample-rate-0"),
        pytest.param((fmt(1, block=0, byte_rate=1), data(SILENCE)), id="block-0"),
        pytest.param((data(SILENCE), fmt(1)), id="fmt-after-data"),
        pytest.param((data(SILENCE),), id="no-fmt"),
        pytest.param(
            (b"fmt " + struct.pack("<I", 4) + fmt(1)[8:12], data(SILENCE)), id="fmt-short"
        ),
        pytest.param((fmt(1),), id="no-data"),
    ],
)
def test_a_wav_whose_header_bounds_no_duration_is_refused(chunks: tuple[bytes, ...]) -> None:
    with pytest.raises(BadRequest) as refused:
        input_audio_tokens(wav(*chunks), PART)
    assert refused.value.code == "unpriced_feature" and refused.value.param == PART
    assert PART in refused.value.message and "Fix the WAV header" in refused.value.message


def test_other_audio_is_counted_by_its_base64_length() -> None:
    """An mp3 frame header (MPEG-1 layer III, 128 kbps): its bitrate is at least 8 kbps, far
    more base64 a second than the 10 tokens billed."""
    mp3 = base64.b64encode(b"\xff\xfb\x90\x64" + b"\0" * 413).decode()
    assert input_audio_tokens(mp3, PART) == len(mp3)
    assert input_audio_tokens("not base64 at all!", PART) == len("not base64 at all!")
