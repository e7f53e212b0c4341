"""Prompt tokens of an audio input (a chat `input_audio` part's base64 `data`). Pure: no I/O.

OpenAI bills input audio by its duration, 1 token per 100 ms. The reservation counts the larger
of two bounds on it:

- The length of the base64. It bounds compressed audio: mp3's lowest bitrate is 8 kbps, about
  1,333 base64 characters a second, far above the 10 tokens a second billed.
- For a WAV (RIFF, or its 64-bit forms RF64 and BW64), ten tokens a second of the duration its
  header gives. Uncompressed audio at a low sample rate takes few bytes a second (1 Hz, 8-bit
  mono: one byte, billed 10 tokens), so its length alone bounds nothing.

A WAV's duration is taken as every byte after its first `data` chunk's header, whatever that
chunk's size says (decoders read a size of 0 or 0xFFFFFFFF to the end of the file, and go on
into a later `data` chunk), over the lowest rate its `fmt` chunks give: the byte rate, the sample
rate times the block size, or times the channels' sample bytes (a PCM decoder times the audio by
the latter, whatever the byte rate says). The bytes are counted from the base64's length, so only
its first 64 KiB are decoded, as images.py does. A WAV whose `fmt` chunk does not come before its
`data` chunk within that prefix, or gives a rate of 0, has no duration the proxy can bound: it is
refused with 400 `unpriced_feature`.
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
"""Base64 characters decoded at most (48 KiB of audio)."""
_RIFF = frozenset({b"RIFF", b"RF64", b"BW64"})
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")
_URL_SAFE = str.maketrans("-_", "+/")


def input_audio_tokens(data: str, path: str) -> int:
    """The most the provider can bill for the audio `data` (base64) of the part at `path`."""
    raw = _head(data)
    if raw[:4] not in _RIFF or raw[8:12] != b"WAVE":
        return utf8_len(data)
    start, rate = _wav_layout(raw)
    if start is None or rate is None:
        raise BadRequest(
            f"{path} is a WAV whose header does not bound its duration, which the provider bills "
            f"({TOKENS_PER_SECOND} tokens a second): its `fmt ` chunk, with a sample rate, "
            "channel count, block size and byte rate above 0, must come before its `data` "
            "chunk, within the first 48 KiB. Fix the WAV header, or send the audio as mp3.",
            code="unpriced_feature",
            param=path,
        )
    # Every character of the base64 counted as data: more than it decodes to, never less.
    present = max(0, len(data) * 3 // 4 - start)
    return max(utf8_len(data), math.ceil(present * TOKENS_PER_SECOND / rate))


def _head(data: str) -> bytes:
    """The bytes of the base64 `data`'s first characters, decoded as leniently as a provider
    may (whitespace and URL-safe characters allowed)."""
    text = _NOT_BASE64.sub("", data[:_HEAD_CHARS].translate(_URL_SAFE))
    # A last group of 2 or 3 characters holds 1 or 2 whole bytes (one of 1 holds none).
    text = text[: len(text) - (len(text) % 4 == 1)]
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


def _wav_layout(raw: bytes) -> tuple[int | None, Fraction | None]:
    """Where the first `data` chunk's audio starts in a WAV, and the lowest byte rate its `fmt `
    chunks before it give (None if there is none, or one gives a rate of 0)."""
    at, rates = 12, list[Fraction]()
    while at + 8 <= len(raw):
        kind, length = raw[at : at + 4], int.from_bytes(raw[at + 4 : at + 8], "little")
        if kind == b"data":
            return at + 8, (min(rates) if rates and all(rates) else None)
        if kind == b"fmt ":
            rates.append(_rate(raw[at + 8 : at + 8 + min(length, 16)]))
        at += 8 + length + (length & 1)
    return None, None


def _rate(fmt: bytes) -> Fraction:
    """The lowest bytes a second a `fmt ` chunk's fields give; 0 if one of them is 0 or cut
    short."""
    if len(fmt) < 16:
        return Fraction(0)
    channels, sample_rate = int.from_bytes(fmt[2:4], "little"), int.from_bytes(fmt[4:8], "little")
    byte_rate, block = int.from_bytes(fmt[8:12], "little"), int.from_bytes(fmt[12:14], "little")
    bits = int.from_bytes(fmt[14:16], "little")
    if not (channels and sample_rate and byte_rate and block):
        return Fraction(0)
    rates = [Fraction(byte_rate), Fraction(sample_rate * block)]
    if bits:  # 0 in a compressed format's header (mp3 in a WAV), whose frames time it
        rates.append(Fraction(sample_rate * channels * bits, 8))
    return min(rates)
