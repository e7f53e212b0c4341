"""Prompt tokens of an image input, by OpenAI's published 512-px tile rule. Pure: no I/O.

`detail: low` is a flat 85 tokens. Otherwise (high, auto) the image is scaled down to fit in
2048 x 2048, then down so its shortest side is at most 768 px, and costs 170 tokens per 512-px
tile plus 85. The size is known only for `data:` URLs whose header we can read cheaply: PNG
(IHDR), WebP (VP8, VP8L, VP8X) and JPEG (the first SOF marker within the first 48 KiB). Only that
prefix of the base64 is decoded; a URL is never fetched. An image whose size is unknown counts the
policy's `limits.image_tokens_default`. A `detail` other than low, high or auto (none is auto) is
refused: `original` sends the image at its own size, which the rule does not bound.

A GIF's size is not read: its header's logical screen does not bound it. Decoders size a GIF by
its frames too (Pillow grows the image to hold a first frame that reaches past the screen), so a
GIF whose screen says 1 x 1 can be billed as a 768 x 2048 frame, eight tiles. Bounding it by its
frames would mean walking every frame descriptor, past color tables, extensions and image data,
to the end of the file, which the 48 KiB prefix does not hold; so a GIF counts the default, the
rule's worst case unless the policy lowers it.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from fractions import Fraction

from proxy.core.errors import BadRequest
from proxy.metering.request_body import describe

LOW_DETAIL_TOKENS = 85
BASE_TOKENS = 85
TILE_TOKENS = 170
TILE = 512
_FIT, _SHORT_SIDE = 2048, 768
_HEAD_CHARS = 64 * 1024
"""Base64 characters decoded at most (48 KiB of image)."""
_MAX_SIDE = 1 << 16
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xDA)})
IMAGE_TOKENS = 1445
"""Worst case of the 512-px tile rule (gpt-4o, detail high or auto): the image is fitted into
2048 x 2048, its short side scaled to 768, so at most 2 x 4 tiles: 85 + 8 * 170. The default
for an image whose size cannot be read from its data: URL header (images.py); never fetched."""
IMAGE_TOKENS_LOW = 85
"""detail: low is a flat 85 tokens whatever the size."""
DETAILS = ("low", "high", "auto")
"""The details the tile rule prices."""


def check_detail(detail: object, path: str) -> None:
    """400 `unpriced_feature` unless `detail` (at `path`) is one the tile rule prices, or None."""
    if detail is None or detail in DETAILS:
        return
    sent = repr(detail) if isinstance(detail, str) and len(detail) <= 40 else describe(detail)
    raise BadRequest(
        f"{path} must be 'low', 'high' or 'auto', got {sent}: the proxy prices an image by the "
        "512-px tile rule, which bounds no other detail ('original' sends the image at its own "
        "size). Use low, high or auto, or leave detail out (auto).",
        code="unpriced_feature",
        param=path,
    )


def image_tokens(url: str, detail: object, default: int) -> int:
    """Tokens of one image: the tile rule when its size can be read, else `default`."""
    if detail == "low":
        return LOW_DETAIL_TOKENS
    size = data_url_size(url)
    return default if size is None else tile_tokens(*size)


def tile_tokens(width: int, height: int) -> int:
    """High detail: fit in 2048 x 2048, shortest side down to 768, 170 per 512-px tile + 85."""
    # Exact fractions: a side that scales to exactly 1024 px is two tiles, never three.
    scale = min(Fraction(1), Fraction(_FIT, max(width, height)))
    scale *= min(Fraction(1), Fraction(_SHORT_SIDE) / (min(width, height) * scale))
    tiles = math.ceil(width * scale / TILE) * math.ceil(height * scale / TILE)
    return BASE_TOKENS + TILE_TOKENS * tiles


def data_url_size(url: str) -> tuple[int, int] | None:
    """(width, height) from a base64 `data:image/...` URL's header, or None."""
    head, comma, data = url[:_HEAD_CHARS].partition(",")
    if not comma or not head.startswith("data:image/") or not head.endswith(";base64"):
        return None
    data = data[: len(data) // 4 * 4]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    size = _png(raw) or _webp(raw) or _jpeg(raw)
    if size is None or not all(0 < side < _MAX_SIDE for side in size):
        return None
    return size


def _png(raw: bytes) -> tuple[int, int] | None:
    if raw[:8] != b"\x89PNG\r\n\x1a\n" or raw[12:16] != b"IHDR" or len(raw) < 24:
        return None
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


def _webp(raw: bytes) -> tuple[int, int] | None:
    if raw[:4] != b"RIFF" or raw[8:12] != b"WEBP" or len(raw) < 30:
        return None
    chunk = raw[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", raw[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(raw[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(raw[24:27], "little") + 1, int.from_bytes(raw[27:30], "little") + 1
    return None


def _jpeg(raw: bytes) -> tuple[int, int] | None:
    if raw[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 9 <= len(raw):
        if raw[at] != 0xFF:
            return None
        marker = raw[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _SOF:
            height, width = struct.unpack(">HH", raw[at + 5 : at + 9])
            return width, height
        if marker in _NO_LENGTH:
            at += 2
            continue
        at += 2 + int.from_bytes(raw[at + 2 : at + 4], "big")
    return None
