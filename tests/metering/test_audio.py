"""Audio inputs (proxy/metering/audio.py): the provider bills 10 tokens a second of audio, so a
PCM WAV is reserved at least its duration's tokens, read from its header however low its rate and
whatever its sizes and byte rate claim; an mp3 counts the length of its base64; anything else,
and a WAV whose header bounds no duration or that a decoder may time otherwise (a codec other
than PCM, a second `fmt ` chunk anywhere), is refused."""

from __future__ import annotations

import base64
import struct
import time

import pytest

from proxy.core.errors import BadRequest
from proxy.metering.audio import input_audio_tokens

HOUR = 3600
PART = "messages[0].content[1]"


def fmt(
    rate: int,
    *,
    byte_rate: int | None = None,
    block: int = 1,
    bits: int = 8,
    tag: int = 1,
    extra: bytes = b"",
) -> bytes:
    """A `fmt ` chunk, PCM unless `tag` says: mono, `rate` samples a second (byte rate = rate ×
    block unless given), `extra` after its 16 bytes."""
    per_second = rate * block if byte_rate is None else byte_rate
    fields = struct.pack("<HHIIHH", tag, 1, rate, per_second, block, bits) + extra
    return b"fmt " + struct.pack("<I", len(fields)) + fields


def extensible(subformat: int, valid_bits: int) -> bytes:
    """A WAVEFORMATEXTENSIBLE tail: cbSize 22, valid bits, channel mask, SubFormat GUID."""
    guid = struct.pack("<H", subformat) + bytes.fromhex("000000001000800000aa00389b71")
    return struct.pack("<HHI", 22, valid_bits, 4) + guid


def chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)


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
        pytest.param((fmt(1, tag=3, bits=8), data(SILENCE)), id="ieee-float"),
        pytest.param(
            (fmt(1, tag=0xFFFE, bits=8, extra=extensible(1, 8)), data(SILENCE)),
            id="extensible-pcm",
        ),
        pytest.param(
            (fmt(1, tag=0xFFFE, bits=32, block=4, extra=extensible(1, 24)), data(SILENCE * 3)),
            id="extensible-timed-by-its-valid-bits",
        ),
        pytest.param(
            (fmt(1, bits=16, block=2), data(bytes(60_000) + SILENCE, size=0)),
            id="size-0-then-silence-read-as-chunks",
        ),
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
        pytest.param((fmt(1, bits=0), data(SILENCE)), id="bits-0"),
    ],
)
def test_a_wav_whose_header_bounds_no_duration_is_refused(chunks: tuple[bytes, ...]) -> None:
    with pytest.raises(BadRequest) as refused:
        input_audio_tokens(wav(*chunks), PART)
    assert refused.value.code == "unpriced_feature" and refused.value.param == PART
    assert PART in refused.value.message and "Fix the WAV header" in refused.value.message


def refusal(audio: str) -> str:
    """The message of the 400 `unpriced_feature` naming the part that `audio` gets."""
    with pytest.raises(BadRequest) as refused:
        input_audio_tokens(audio, PART)
    assert refused.value.code == "unpriced_feature" and refused.value.param == PART
    assert refused.value.message.startswith(PART), refused.value.message
    assert "Send the audio as mp3, or as a WAV of PCM" in refused.value.message
    return refused.value.message


def rf64(payload: bytes, *after: bytes) -> str:
    """An RF64 WAV at 8 kHz whose `data` chunk's size is in its `ds64` chunk, `after` it."""
    ds64 = chunk(b"ds64", struct.pack("<QQQI", 0, len(payload), len(payload), 0))
    return wav(ds64, fmt(8000), data(payload, size=0xFFFFFFFF), *after, riff=b"RF64")


@pytest.mark.parametrize(
    "audio",
    [
        pytest.param(wav(fmt(1_000), fmt(1), data(SILENCE)), id="both-before-the-data"),
        pytest.param(wav(fmt(8000), data(b""), fmt(1), data(SILENCE)), id="after-empty-data"),
        pytest.param(
            wav(fmt(8000), data(b"\x80" * 16_000), fmt(1), data(SILENCE)), id="after-the-data"
        ),
        pytest.param(
            wav(fmt(8000), data(b"\x80" * 60_000), fmt(1), data(SILENCE)),
            id="past-the-first-48-KiB",
        ),
        pytest.param(rf64(b"\x80" * 60_000, fmt(1), data(SILENCE)), id="after-rf64-data"),
    ],
)
def test_a_wav_with_a_second_fmt_chunk_anywhere_is_refused(audio: str) -> None:
    """ffmpeg times a WAV by its first `fmt ` chunk, other readers by their last: one at 8 kHz
    then one at 1 Hz is billed 1 Hz by some."""
    assert "more than one `fmt ` chunk" in refusal(audio)


GSM = fmt(1, tag=0x31, byte_rate=65, block=65, bits=0, extra=struct.pack("<HH", 2, 320))
"""GSM 6.10 at 1 Hz: 320 samples in each 65-byte block, 65 bytes a second by its header."""


@pytest.mark.parametrize(
    ("fmt_chunk", "tag"),
    [
        pytest.param(GSM, "0x0031", id="gsm-6.10"),
        pytest.param(fmt(1, tag=2, bits=4, block=256, byte_rate=1), "0x0002", id="ms-adpcm"),
        pytest.param(fmt(1, tag=0x55, bits=0), "0x0055", id="mp3-in-wav"),
        pytest.param(fmt(1, tag=0xFFFE, extra=extensible(0x31, 8)), "0xfffe", id="extensible-gsm"),
        pytest.param(fmt(1, tag=0xFFFE, extra=struct.pack("<H", 0)), "0xfffe", id="extensible-cut"),
    ],
)
def test_a_wav_of_a_codec_other_than_pcm_is_refused(fmt_chunk: bytes, tag: str) -> None:
    """A decoder times a compressed block by its codec (GSM: 320 samples in 65 bytes), which the
    header's rates do not give: the review's GSM WAV at 1 Hz plays 36 times what it reserved."""
    message = refusal(wav(fmt_chunk, chunk(b"fact", struct.pack("<I", 36_160)), data(bytes(650))))
    assert f"is a WAV of codec {tag}" in message, message


def rifx() -> bytes:
    """A big-endian WAV (RIFX), an hour at 1 Hz: ffmpeg plays it."""
    fields = struct.pack(">HHIIHH", 1, 1, 1, 1, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack(">I", 16) + fields
    body += b"data" + struct.pack(">I", HOUR) + SILENCE
    return b"RIFX" + struct.pack(">I", len(body)) + body


ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x00"
"""An empty ID3v2.4 tag: ffmpeg skips it, then reads what follows as any file."""
MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)
"""An MPEG-1 layer III frame, 128 kbps."""


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(rifx(), id="rifx"),
        pytest.param(ID3 + base64.b64decode(wav(fmt(1), data(SILENCE))), id="id3-then-riff"),
        pytest.param(b"RIFF\0\0\0\0AVI " + MP3_FRAME, id="riff-not-wave"),
        pytest.param(b"OggS\0\x02" + bytes(400), id="ogg"),
        pytest.param(b"fLaC\0\0\0\x22" + bytes(400), id="flac"),
        pytest.param(b"ID3\x04\x00\x00\x00\x00\x00\x80" + MP3_FRAME, id="id3-size-not-7-bit"),
        pytest.param(b"", id="empty"),
    ],
)
def test_audio_neither_mp3_nor_a_wav_is_refused(raw: bytes) -> None:
    """Whatever the part's `format` says: a provider may sniff the content."""
    message = refusal(base64.b64encode(raw).decode())
    assert "is neither an mp3 nor a PCM WAV" in message, message


def test_data_that_is_not_base64_is_refused() -> None:
    assert "is neither an mp3 nor a PCM WAV" in refusal("not base64 at all!")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(MP3_FRAME, id="frame"),
        pytest.param((b"\xff\xe3\x18\xc4" + bytes(68)) * 2, id="mpeg-2.5-8-kbps"),
        pytest.param(ID3 + MP3_FRAME, id="id3-then-frame"),
        pytest.param(b"ID3\x04\x00\x10\x00\x00\x00\x02??" + bytes(10) + MP3_FRAME, id="footer"),
        pytest.param(
            b"ID3\x04\x00\x00\x00\x04\x00\x00" + bytes(65_536) + MP3_FRAME,
            id="tag-past-the-first-48-KiB",
        ),
    ],
)
def test_an_mp3_is_counted_by_its_base64_length(raw: bytes) -> None:
    """Its bitrate is at least 8 kbps, ~1,333 base64 characters a second, far more than the 10
    tokens a second billed."""
    mp3 = base64.b64encode(raw).decode()
    assert input_audio_tokens(mp3, PART) == len(mp3)


def apev2(items: bytes, *, header: bool) -> bytes:
    """An APEv2 tag: an optional header, `items`, its footer (its size counts items + footer)."""
    size, flags = len(items) + 32, 0x8000_0000 if header else 0
    footer = b"APETAGEX" + struct.pack("<IIII", 2000, size, 1, flags) + bytes(8)
    head = b"APETAGEX" + struct.pack("<IIII", 2000, size, 1, flags | 0x2000_0000) + bytes(8)
    return (head if header else b"") + items + footer


ID3V1 = b"TAG" + b"title".ljust(125, b"\0")
APE = apev2(b"\x05\0\0\0\0\0\0\0Title\0tune!", header=True)
PADDED = b"\xff\xfb\x92\x64" + bytes(414)
"""An MPEG-1 layer III frame, 128 kbps at 44.1 kHz with its padding byte: 418 bytes."""


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(MP3_FRAME * 3 + MP3_FRAME[:200], id="last-frame-cut-short"),
        pytest.param(MP3_FRAME * 3 + MP3_FRAME[:2], id="last-header-cut-short"),
        pytest.param(MP3_FRAME + PADDED + MP3_FRAME, id="padded"),
        pytest.param((b"\xff\xf3\xe4\xc4" + bytes(476)) * 3, id="mpeg-2-160-kbps-24-khz"),
        pytest.param(MP3_FRAME * 3 + ID3V1, id="id3v1"),
        pytest.param(MP3_FRAME * 3 + APE, id="apev2"),
        pytest.param(MP3_FRAME * 3 + apev2(b"", header=True) + ID3V1, id="apev2-then-id3v1"),
        pytest.param(ID3 + MP3_FRAME * 2 + APE + ID3V1, id="all-three-tags"),
    ],
)
def test_an_mp3_s_frames_follow_one_another_to_its_end_or_its_tags(raw: bytes) -> None:
    mp3 = base64.b64encode(raw).decode()
    assert input_audio_tokens(mp3, PART) == len(mp3)


def module_behind_a_frame_sync() -> bytes:
    """A ProTracker module (magic `M.K.` at byte 1080) whose free 20-byte title begins with a
    valid MPEG-1 layer III frame header: a decoder with libopenmpt plays it for hours."""
    title = b"\xff\xfb\x90\x64" + b"tune".ljust(16, b"\0")
    orders = bytes([128, 127]) + bytes(128)
    row = bytes([0, 0, 0x0F, 0x1F, 0, 0, 0x0F, 0x20, 0, 0, 0x0E, 0xEF, 0, 0, 0, 0])  # slowest
    module = title + bytes(31 * 30) + orders + b"M.K." + row * 64
    assert module[1080:1084] == b"M.K."
    return module


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(module_behind_a_frame_sync(), id="module-behind-a-frame-sync"),
        pytest.param(MP3_FRAME + bytes(500), id="a-frame-then-no-header"),
        pytest.param(MP3_FRAME * 3 + b"OggS\0\x02" + bytes(400), id="frames-then-another-format"),
        pytest.param((b"\xff\xfb\x00\x64" + bytes(413)) * 2, id="free-format"),
        pytest.param((b"\xff\xfb\xf0\x64" + bytes(413)) * 2, id="bitrate-index-15"),
        pytest.param((b"\xff\xfb\x9c\x64" + bytes(413)) * 2, id="sample-rate-index-3"),
        pytest.param((b"\xff\xeb\x90\x64" + bytes(413)) * 2, id="reserved-version"),
        pytest.param((b"\xff\xfd\x90\x64" + bytes(413)) * 2, id="layer-ii"),
        pytest.param(MP3_FRAME * 3 + ID3V1 + MP3_FRAME, id="after-an-id3v1-tag"),
        pytest.param(MP3_FRAME + apev2(bytes(600), header=True)[40:], id="ape-tag-cut-short"),
        pytest.param(
            MP3_FRAME + apev2(module_behind_a_frame_sync(), header=False),
            id="ape-footer-claiming-the-rest-without-its-header",
        ),
    ],
)
def test_data_that_only_begins_with_a_frame_sync_is_not_an_mp3(raw: bytes) -> None:
    message = refusal(base64.b64encode(raw).decode())
    assert "is neither an mp3 nor a PCM WAV" in message, message
    assert "MPEG layer III frames, each where the last ends" in message, message


def test_a_megabyte_of_mp3_is_walked_in_linear_time() -> None:
    """Its smallest frames (MPEG-2 layer III, 8 kbps at 24 kHz: 24 bytes), 43,690 of them."""
    mp3 = base64.b64encode((b"\xff\xf3\x14\xc4" + bytes(20)) * (2**20 // 24)).decode()
    started = time.perf_counter()
    assert input_audio_tokens(mp3, PART) == len(mp3)
    assert time.perf_counter() - started < 1.0


def test_chunks_past_the_first_48_kib_are_read() -> None:
    """A `LIST` chunk after the audio, as editors write it: read, and nothing refused."""
    audio = wav(fmt(8000), data(b"\x80" * 60_000), chunk(b"LIST", b"INFOISFT" + bytes(8)))
    assert input_audio_tokens(audio, PART) == len(audio)


def test_a_wav_of_too_many_chunks_is_refused() -> None:
    audio = wav(fmt(8000), *[chunk(b"JUNK", b"")] * 5000, data(b"\x80" * 8000))
    assert "more than 4096 chunks" in refusal(audio)
