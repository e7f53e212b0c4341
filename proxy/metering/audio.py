"""Prompt tokens of an audio input (a chat `input_audio` part's base64 `data`). Pure: no I/O.

OpenAI bills input audio by its duration, 1 token per 100 ms. The proxy reserves only audio whose
duration it can bound, whatever the part's `format` says (a provider may sniff the content), and
refuses any other with 400 `unpriced_feature` naming the part:

- An mp3: MPEG-1, 2 or 2.5 layer III frames after an optional ID3v2 tag, each frame header
  valid (a bitrate index of 1 to 14, so neither free format nor the bad index 15; a sample rate
  index of 0 to 2) and each next header where the last frame ends (its length, with its padding
  byte), to the end of the data: only an ID3v1 tag (`TAG` and 125 bytes) and/or an APEv2 tag
  may follow, and the last frame may be cut short. Data that only begins with a frame sync may
  be another format a decoder plays for hours (a ProTracker module's free title can begin with
  one). Layers I and II (mp2, not what `mp3` names) are refused: their frames are longer (up to
  2,880 bytes), room for more of another format's structures inside one. An mp3 is reserved as
  the length of its base64: the lowest layer III bitrate is 8 kbps, about 1,333 base64
  characters a second, far above the 10 tokens a second billed, and each frame of a chain holds
  its duration at its bitrate. The data is decoded once and its frames walked by a table lookup
  each: linear, a few ms for a 1 MB mp3.
- A PCM WAV (RIFF, or its 64-bit forms RF64 and BW64) of format 1 (PCM), 3 (IEEE float) or
  0xFFFE (extensible) with a PCM or float subformat. Uncompressed audio at a low sample rate takes
  few bytes a second (1 Hz, 8-bit mono: one byte, billed 10 tokens), so its length alone bounds
  nothing: it is reserved ten tokens a second of the duration its header gives, if that is more.

Anything else is refused: a big-endian RIFX WAV, a WAV after an ID3 tag, a WAV of another codec
(GSM 6.10 holds 320 samples in a 65-byte block, which no field of its header times), other
containers. A provider that decodes with ffmpeg plays them all, at durations the proxy does not
read.

A WAV's duration is taken as every byte after its first `data` chunk's header, whatever that
chunk's size says (decoders read a size of 0 or 0xFFFFFFFF to the end of the file, and go on
into a later `data` chunk), over the lowest rate its `fmt ` chunk gives: the byte rate, the
sample rate times the block size, or times the channels' sample bytes (a PCM decoder times the
audio by the latter, whatever the byte rate says; an extensible format's valid bits too). The
bytes are counted from the base64's length. Its chunks are read to the end of the file, by
random access into the base64 (only its first 64 KiB are decoded, as images.py does, unless a
chunk lies beyond them), and it must have exactly one `fmt ` chunk, before its first `data`
chunk, giving no rate of 0: readers disagree on which of two times the audio (ffmpeg takes the
first, a reader that keeps what it read last the last), and without one there is no duration to
bound.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from fractions import Fraction

from proxy.core.errors import BadRequest
from proxy.metering.text_counter import utf8_len

TOKENS_PER_SECOND = 10
_HEAD_CHARS = 64 * 1024
"""Base64 characters decoded at first (48 KiB of audio)."""
_RIFF = frozenset({b"RIFF", b"RF64", b"BW64"})
_MAX_CHUNKS = 4096
"""Chunk headers read at most; a WAV holds a handful (runs of silence after a `data` chunk of
size 0, read as chunks of size 0 too, are skipped at once)."""
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(_ALPHABET) - set(b"-_")))
_URL_SAFE = bytes.maketrans(b"-_", b"+/")
_NOT_ZERO = re.compile("[^A]")
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_SUBFORMAT_TAIL = bytes.fromhex("000000001000800000aa00389b71")
"""The KSDATAFORMAT_SUBTYPE GUID after its format tag (WAVEFORMATEXTENSIBLE.SubFormat)."""
_SEND_INSTEAD = (
    "Send the audio as mp3, or as a WAV of PCM or float samples (RIFF, RF64 or BW64) with one "
    "`fmt ` chunk."
)


def input_audio_tokens(data: str, path: str) -> int:
    """The most the provider can bill for the audio `data` (base64) of the part at `path`."""
    audio = _Base64(data)
    if audio.head[:4] in _RIFF and audio.head[8:12] == b"WAVE":
        return _wav_tokens(audio, data, path)
    if _is_mp3(audio):
        return utf8_len(data)
    raise _refused(
        path,
        "is neither an mp3 nor a PCM WAV, whatever its `format` says: the proxy cannot bound the "
        f"duration the provider bills for it ({TOKENS_PER_SECOND} tokens a second; an mp3 is "
        "MPEG layer III frames, each where the last ends, to the end of the data; RIFX, a WAV "
        "after an ID3 tag and other containers are not read)",
    )


def _wav_tokens(audio: _Base64, data: str, path: str) -> int:
    start, rate = _wav_layout(audio, path)
    if start is None or rate is None:
        raise BadRequest(
            f"{path} is a WAV whose header does not bound its duration, which the provider bills "
            f"({TOKENS_PER_SECOND} tokens a second): its `fmt ` chunk, with a sample rate, "
            "channel count, block size, bits per sample and byte rate above 0, must come before "
            "its `data` chunk. Fix the WAV header, or send the audio as mp3.",
            code="unpriced_feature",
            param=path,
        )
    # Every character of the base64 counted as data: more than it decodes to, never less.
    present = max(0, len(data) * 3 // 4 - start)
    return max(utf8_len(data), math.ceil(present * TOKENS_PER_SECOND / rate))


def _refused(path: str, what: str) -> BadRequest:
    return BadRequest(f"{path} {what}. {_SEND_INSTEAD}", code="unpriced_feature", param=path)


def _is_mp3(audio: _Base64) -> bool:
    """Whether the audio is MPEG audio frames that chain to its end, after an ID3v2 tag if it
    has one (as ffmpeg reads a tag: "ID3", a version, flags, then a size of four 7-bit bytes)."""
    at, tag = 0, audio.read(0, 10)
    if tag[:3] == b"ID3" and len(tag) == 10 and not any(byte & 0x80 for byte in tag[6:10]):
        size = (tag[6] << 21) | (tag[7] << 14) | (tag[8] << 7) | tag[9]
        at = 10 + size + (10 if tag[5] & 0x10 else 0)  # a footer repeats the header
    sync = audio.read(at, 2)
    if len(sync) < 2 or sync[0] != 0xFF or sync[1] & 0xE0 != 0xE0:
        return False
    raw = audio.whole()
    start = at
    while at + 4 <= len(raw):
        length = _FRAME_LENGTHS[(raw[at + 1] & 0x1F) << 8 | raw[at + 2]]
        if raw[at] != 0xFF or raw[at + 1] & 0xE0 != 0xE0 or not length:
            break
        at += length
    # The frames run to the end (the last may be cut short, or leave less than a header), or
    # tags take up exactly the rest.
    return at > start and (at + 4 > len(raw) or _tags_start(raw, at) == at)


def _tags_start(raw: bytes, at: int) -> int:
    """Where the tags at the end of an mp3 whose frames end at `at` begin: an ID3v1 tag last,
    an APEv2 tag before it. The APEv2 tag must have its header, where its footer's size puts
    it: a lone footer could claim any bytes before it as its items."""
    end = len(raw)
    if end - at >= 128 and raw[end - 128 : end - 125] == b"TAG":
        end -= 128
    footer = raw[end - 32 : end] if end - at >= 64 else b""
    if footer[:8] == b"APETAGEX" and int.from_bytes(footer[20:24], "little") >> 31:
        begins = end - int.from_bytes(footer[12:16], "little") - 32
        if at <= begins <= end - 64 and raw[begins : begins + 8] == b"APETAGEX":
            end = begins
    return end


def _frame_lengths() -> list[int]:
    """A layer III frame's length in bytes by the low 5 bits of its header's second byte
    (version, layer, protection) and its third (bitrate, sample rate, padding, private); 0 for
    any other header: a reserved version or sample rate, free format, bitrate index 15, or a
    layer other than III."""
    kbps = {
        3: (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
        2: (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    }
    rates = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
    lengths = [0] * 8192
    for key in range(8192):
        version, layer = key >> 11 & 3, key >> 9 & 3
        bitrate, rate, padding = key >> 4 & 15, key >> 2 & 3, key >> 1 & 1
        if version == 1 or layer != 1 or bitrate in (0, 15) or rate == 3:
            continue
        # 1152 samples a frame in MPEG-1, 576 in MPEG-2 and 2.5: 144 or 72 bytes per bit/s/Hz.
        per = 144 if version == 3 else 72
        bps = kbps[3 if version == 3 else 2][bitrate - 1] * 1000
        lengths[key] = per * bps // rates[version][rate] + padding
    return lengths


_FRAME_LENGTHS = _frame_lengths()


def _wav_layout(audio: _Base64, path: str) -> tuple[int | None, Fraction | None]:
    """Where the first `data` chunk's audio starts in a WAV, and the rate of its `fmt ` chunk if
    that comes before it (None if there is none, or it gives a rate of 0). Every chunk is read,
    as a reader that skips each by its size meets them (an RF64's `data` chunk by the size its
    `ds64` chunk gives): more than one `fmt ` chunk, or one of a codec other than PCM, is
    refused."""
    at, start, rate, fmts, ds64 = 12, None, None, 0, None
    for _ in range(_MAX_CHUNKS):
        header = audio.read(at, 8)
        if len(header) < 8:
            return start, rate
        kind, length = header[:4], int.from_bytes(header[4:], "little")
        if kind == b"fmt ":
            fmts += 1
            if fmts > 1:
                raise _refused(
                    path,
                    "is a WAV of more than one `fmt ` chunk: decoders differ on which one times "
                    "it, so the proxy cannot bound the duration the provider bills",
                )
            if start is None:
                rate = _rate(audio.read(at + 8, min(length, 40)), path)
        elif kind == b"ds64" and length >= 16:
            ds64 = int.from_bytes(audio.read(at + 16, 8), "little")
        elif kind == b"data":
            start = at + 8 if start is None else start
            length = ds64 if length == 0xFFFFFFFF and ds64 is not None else length
        elif header == bytes(8):
            # Silence after a `data` chunk of size 0 reads as chunks of size 0: skip it whole.
            length = max(0, audio.zeros(at) // 8 * 8 - 8)
        at += 8 + length + (length & 1)
    raise _refused(path, f"is a WAV of more than {_MAX_CHUNKS} chunks")


def _rate(fmt: bytes, path: str) -> Fraction | None:
    """The lowest bytes a second a `fmt ` chunk's fields give; None if one of them is 0 or cut
    short. 400 unless its format is PCM or float."""
    if len(fmt) < 16:
        return None
    tag = int.from_bytes(fmt[0:2], "little")
    valid_bits = int.from_bytes(fmt[18:20], "little") if tag == _EXTENSIBLE else 0
    if tag == _EXTENSIBLE and (len(fmt) < 40 or fmt[26:40] != _SUBFORMAT_TAIL):
        tag = -1  # cut short, or not a KSDATAFORMAT_SUBTYPE GUID
    elif tag == _EXTENSIBLE:
        tag = int.from_bytes(fmt[24:26], "little")
    if tag not in (_PCM, _FLOAT):
        raise _refused(
            path,
            f"is a WAV of codec {int.from_bytes(fmt[0:2], 'little'):#06x}, whose duration (which "
            "the provider bills) its header does not give: the proxy times PCM (1), float (3) "
            "and extensible (0xfffe) PCM or float",
        )
    channels, sample_rate = int.from_bytes(fmt[2:4], "little"), int.from_bytes(fmt[4:8], "little")
    byte_rate, block = int.from_bytes(fmt[8:12], "little"), int.from_bytes(fmt[12:14], "little")
    bits = int.from_bytes(fmt[14:16], "little")
    if not (channels and sample_rate and byte_rate and block and bits):
        return None
    rates = [Fraction(byte_rate), Fraction(sample_rate * block)]
    for sample_bits in (bits, valid_bits) if valid_bits else (bits,):
        rates.append(Fraction(sample_rate * channels * sample_bits, 8))
    return min(rates)


class _Base64:
    """The bytes a base64 string decodes to, decoded as leniently as a provider may (whitespace
    and URL-safe characters allowed). Only its first characters are decoded (`head`) until a
    byte beyond them is read: then the whole string is cleaned once, and read where asked."""

    def __init__(self, data: str) -> None:
        self._data = data
        self._text: str | None = None
        self.head = _decode(_clean(data[:_HEAD_CHARS]))
        # At most the bytes it decodes to (exactly, but for characters that are not base64).
        self._bound = (len(data) - data.endswith("=") - data.endswith("==")) * 3 // 4

    def read(self, at: int, count: int) -> bytes:
        """Up to `count` bytes from byte `at` (fewer at the end)."""
        if at + count <= len(self.head) or len(self._data) <= _HEAD_CHARS:
            return self.head[at : at + count]
        if at >= self._bound:
            return b""
        text = self._whole()
        return _decode(text[at // 3 * 4 : (at + count + 2) // 3 * 4])[at % 3 :][:count]

    def zeros(self, at: int) -> int:
        """How many bytes from byte `at` on are surely zero (base64 'A's)."""
        if len(self._data) <= _HEAD_CHARS:
            return len(self.head[at:]) - len(self.head[at:].lstrip(b"\0"))
        text = self._whole()
        found = _NOT_ZERO.search(text, at // 3 * 4)
        return max(0, (found.start() if found else len(text)) * 6 // 8 - at)

    def whole(self) -> bytes:
        """Every byte, decoded once."""
        if len(self._data) <= _HEAD_CHARS:
            return self.head
        return _decode(self._whole())

    def _whole(self) -> str:
        if self._text is None:
            self._text = _clean(self._data)
        return self._text


def _clean(data: str) -> str:
    """The base64 characters of `data`, URL-safe ones as standard ones."""
    return data.encode("ascii", "ignore").translate(_URL_SAFE, _NOT_BASE64).decode("ascii")


def _decode(text: str) -> bytes:
    """The bytes of base64 `text` (its characters all base64), its last group too."""
    # A last group of 2 or 3 characters holds 1 or 2 whole bytes (one of 1 holds none).
    text = text[: len(text) - (len(text) % 4 == 1)]
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""
