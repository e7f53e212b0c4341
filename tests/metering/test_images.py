"""Image inputs: OpenAI's 512-px tile rule when the size can be read from a data: URL's header
(PNG, WebP, JPEG), the policy's per-image default otherwise (a GIF's too: its header's logical
screen does not bound the frames a decoder sizes it by); through the openai SDK with a
generated PNG, the ledger exact."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from breadth_support import HEADERS, breadth_policy, cost, sdk
from support import chat_prompt_tokens, settled

from proxy.budget.call import prepare
from proxy.budget.endpoints import ENDPOINTS
from proxy.metering.images import data_url_size, image_tokens, tile_tokens
from proxy.testing.local import local_stack

CHAT = ENDPOINTS["/v1/chat/completions"]


def png(width: int, height: int) -> bytes:
    """A valid grey PNG: signature, IHDR, one IDAT of zero rows, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * ((width + 1) * height))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def data_url(raw: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(raw).decode()


JPEG = (
    b"\xff\xd8"
    + b"\xff\xe0"
    + struct.pack(">H", 16)
    + b"JFIF\0" * 2
    + b"\0\0\0\0"
    + b"\xff\xc0"
    + struct.pack(">HBHHB", 11, 8, 600, 800, 1)
    + b"\x01\x11\x00"
)
GIF = b"GIF89a" + struct.pack("<HH", 320, 200) + b"\0" * 8
TALL_GIF = (
    b"GIF89a"
    + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0)
    + b"\0\0\0\xff\xff\xff"
    + b","
    + struct.pack("<HHHHB", 0, 0, 768, 2048, 0)
)
"""A GIF whose logical screen says 1 x 1 and whose first frame is 768 x 2048 (its image data
left out: the header is all that is read)."""
WEBP = b"RIFF" + b"\0" * 4 + b"WEBPVP8X" + b"\0" * 8 + (999).to_bytes(3, "little") * 2


@pytest.mark.parametrize(
    ("size", "tokens"),
    [
        ((1024, 1024), 765),  # 768 x 768: 4 tiles
        ((2048, 4096), 1105),  # OpenAI's example: 768 x 1536, 6 tiles
        ((512, 512), 255),
        ((100, 100), 255),  # never scaled up
        ((4096, 1024), 85 + 170 * 4),  # 2048 x 512
        ((1536, 2048), 765),  # 768 x 1024: exactly two tiles high
    ],
)
def test_tile_rule(size: tuple[int, int], tokens: int) -> None:
    assert tile_tokens(*size) == tokens


@pytest.mark.parametrize(
    ("url", "size"),
    [
        (data_url(png(1024, 768)), (1024, 768)),
        (data_url(JPEG, "jpeg"), (800, 600)),
        (data_url(GIF, "gif"), None),
        (data_url(WEBP, "webp"), (1000, 1000)),
        ("https://example.com/cat.png", None),
        ("data:image/png;base64,not base64!", None),
        (data_url(b"\x89PNG\r\n\x1a\n" + b"\0" * 16), None),
        ("data:text/plain;base64," + base64.b64encode(png(10, 10)).decode(), None),
    ],
)
def test_size_is_read_from_data_url_headers_only(url: str, size: tuple[int, int] | None) -> None:
    assert data_url_size(url) == size


def test_low_detail_is_flat_and_unknown_sizes_take_the_default() -> None:
    assert image_tokens(data_url(png(4000, 4000)), "low", 999) == 85
    assert image_tokens("https://example.com/cat.png", "high", 999) == 999
    assert image_tokens(data_url(png(4000, 4000)), "auto", 999) == 765  # 768 x 768: 4 tiles


def test_a_gif_counts_the_default_whatever_its_screen_says() -> None:
    """Pillow sizes this GIF 768 x 2048, eight tiles, by its frame."""
    assert image_tokens(data_url(TALL_GIF, "gif"), "high", 1445) == 1445
    assert image_tokens(data_url(TALL_GIF, "gif"), "low", 1445) == 85


def body(url: str, detail: str = "high") -> dict[str, Any]:
    content = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": url, "detail": detail}},
    ]
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}


def test_policy_default_counts_images_of_unknown_size(tmp_path: Path) -> None:
    pol = breadth_policy(tmp_path, top="limits: {image_tokens_default: 500}")
    plan = pol.plans["test"]
    url = prepare(pol, plan, CHAT, orjson.dumps(body("https://x/a.png")), shadow=False)
    known = prepare(pol, plan, CHAT, orjson.dumps(body(data_url(png(512, 512)))), shadow=False)
    assert url.asked.prompt_tokens - known.asked.prompt_tokens == 500 - 255


async def test_png_data_url_is_estimated_by_its_tiles_and_charged_exactly(
    tmp_path: Path, store_url: str
) -> None:
    request = body(data_url(png(1024, 1024)))
    text_only = {**request, "messages": [{"role": "user", "content": "What is in this image?"}]}
    async with local_stack(breadth_policy(tmp_path), store=store_url) as stack:
        async with sdk(stack) as client:
            raw = await client.chat.completions.with_raw_response.create(**request, max_tokens=10)
        prompt = stack.fake.billed[0].prompt_tokens
        # The image part: 765 tokens; its text and the part wrapper cost what plain text does.
        assert prompt == chat_prompt_tokens(text_only) + 765
        expected = cost("gpt-4o", input=prompt, output=10)
        # Reserved: the estimate, every prompt token at the price of a cache write OpenAI may bill.
        reserved = cost("gpt-4o", cache_write=prompt, output=10)
        remaining = int(raw.headers["x-cycles-remaining"].split()[0].replace(".", ""))
        assert remaining == (50 * 10**8 - reserved) // 100, "the reservation was the estimate"
        row = await settled(stack.ledger)
        assert row.spent == expected


async def test_bad_image_detail_is_400_and_nothing_reserved(tmp_path: Path) -> None:
    async with local_stack(breadth_policy(tmp_path)) as stack, aiohttp.ClientSession() as http:
        payload = {**body("https://x/a.png", detail="ultra"), "max_tokens": 5}
        async with http.post(
            stack.url + "/v1/chat/completions", json=payload, headers=HEADERS
        ) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert error["param"] == "messages[0].content[1].image_url.detail"
        assert stack.fake.calls == 0 and await stack.ledger.balances("alpha") == []


def test_a_models_image_token_factor_scales_only_its_images(tmp_path: Path) -> None:
    """gpt-4o-mini bills an image about 33.3 times gpt-4o's tile tokens (2833 + 5667 a tile):
    with image_token_factor 33.34 its estimate covers that, and the text is not scaled."""
    pol = breadth_policy(
        tmp_path, models="mini-vision: {input: 0.15, output: 0.60, image_token_factor: 33.34}"
    )
    plan = pol.plans["test"]
    with_image = body(data_url(png(512, 512)))
    text_only = {**with_image, "messages": [{"role": "user", "content": "What is in this image?"}]}
    prompts = {}
    for model in ("gpt-4o", "mini-vision"):
        for name, request in (("image", with_image), ("text", text_only)):
            raw = orjson.dumps({**request, "model": model})
            prompts[model, name] = prepare(pol, plan, CHAT, raw, shadow=False).asked.prompt_tokens
    assert prompts["gpt-4o", "image"] - prompts["gpt-4o", "text"] == 85 + 170  # one tile
    mini_image = prompts["mini-vision", "image"] - prompts["mini-vision", "text"]
    assert mini_image >= 2833 + 5667  # what OpenAI bills gpt-4o-mini for it
    assert prompts["mini-vision", "text"] == prompts["gpt-4o", "text"]
