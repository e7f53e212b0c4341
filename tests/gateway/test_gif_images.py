"""A GIF's size is not read from its header (issue 13): its logical screen does not bound what a
decoder sizes it by. Pillow grows the image to hold a first frame that reaches past the screen,
so a GIF whose screen says 1 x 1 and whose frame is 768 x 2048 is billed eight tiles (gpt-4o-mini:
2833 + 8 x 5667 = 48,169 tokens). A GIF counts `limits.image_tokens_default`, the tile rule's
worst case, however small it says it is.

Each call runs with the real openai SDK on both stores, on chat and the Responses API; the fake
provider, which bills any image but a PNG as the rule's worst case (what a decoder that sizes by
frames bills this GIF), is the oracle: billed <= charged <= reserved."""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import openai
import pytest
from prices_support import HEADERS, billed_cost, measured_call, prices_policy

from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

EIGHT_TILES_MINI = 2833 + 8 * 5667


def lzw_zeros(pixels: int, min_size: int = 2) -> bytes:
    """GIF image data of `pixels` pixels of color 0, LZW-coded as an encoder writes them: each
    code a run one pixel longer than the last (a run of n pixels takes about sqrt(2n) codes)."""
    clear, end = 1 << min_size, (1 << min_size) + 1
    size, nxt, acc, bits, out = min_size + 1, end + 1, 0, 0, bytearray()

    def emit(code: int) -> None:
        nonlocal acc, bits
        acc, bits = acc | code << bits, bits + size
        while bits >= 8:
            out.append(acc & 0xFF)
            acc, bits = acc >> 8, bits - 8

    emit(clear)
    left, length = pixels, 1
    while left > length:
        emit(0 if length == 1 else end + length - 1)
        left, length, nxt = left - length, length + 1, nxt + 1
        if nxt > 1 << size and size < 12:
            size += 1
    emit(0 if left == 1 else end + left - 1)
    emit(end)
    return bytes(out) + (bytes([acc]) if bits else b"")


def gif(screen: tuple[int, int], frame: tuple[int, int]) -> str:
    """A one-frame black GIF data URL whose logical screen is `screen` and whose frame, at 0, 0,
    is `frame`."""
    data = lzw_zeros(frame[0] * frame[1])
    blocks = b"".join(
        bytes([len(data[i : i + 255])]) + data[i : i + 255] for i in range(0, len(data), 255)
    )
    raw = (
        b"GIF89a"
        + struct.pack("<HHBBB", *screen, 0x80, 0, 0)
        + b"\x00\x00\x00\xff\xff\xff"
        + b","
        + struct.pack("<HHHHB", 0, 0, *frame, 0)
        + b"\x02"
        + blocks
        + b"\x00;"
    )
    return "data:image/gif;base64," + base64.b64encode(raw).decode()


GIFS = {
    "frame-past-its-screen": gif((1, 1), (768, 2048)),
    "honest-and-small": gif((64, 64), (64, 64)),
}


async def ask(stack: Stack, api: str, url: str) -> Any:
    async with openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
    ) as sdk:
        if api == "chat":
            image = {"type": "image_url", "image_url": {"url": url, "detail": "high"}}
            return await sdk.chat.completions.create(
                model="gpt-4o-mini",
                messages=[
                    {"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}
                ],
                max_completion_tokens=20,
            )
        part = {"type": "input_image", "image_url": url, "detail": "high"}
        return await sdk.responses.create(
            model="gpt-4o-mini",
            input=[
                {"role": "user", "content": [{"type": "input_text", "text": "What is it?"}, part]}
            ],
            max_output_tokens=20,
        )


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("name", GIFS)
async def test_a_gif_is_reserved_as_the_largest_image_it_can_be_billed_as(
    tmp_path: Path, store_url: str, api: str, name: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=0.15))
    async with local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(stack.ledger, ask(stack, api, GIFS[name]))
    [billed] = fake.billed
    assert billed.prompt_tokens > EIGHT_TILES_MINI, billed
    assert billed_cost(billed) <= charged <= reserved, (billed_cost(billed), charged, reserved)
