"""The images and files Responses input items other than messages carry
(proxy/metering/shapes/item_media.py): found wherever they sit, each image counted by the tile
rule and its payload left out of the JSON counted as text, as a message's image is."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from proxy.core.encodings import get_encoding
from proxy.core.errors import BadRequest
from proxy.metering.images import IMAGE_TOKENS, tile_tokens
from proxy.metering.shapes import item_media
from proxy.metering.shapes.responses import estimate_responses

O200K = get_encoding("o200k_base")


def png_url(width: int, height: int, padding: int = 0) -> str:
    """A PNG data URL whose header says that size, followed by `padding` bytes of pixels."""
    ihdr = struct.pack(">II", width, height) + b"\x08\x06\x00\x00\x00"
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"
    return "data:image/png;base64," + base64.b64encode(head + b"\x7f" * padding).decode()


def prompt_of(given: list[Any]) -> tuple[int, int]:
    """(prompt tokens, of which image tokens) of a Responses call sending `given`."""
    counted = estimate_responses(
        {"input": given}, O200K, default_max_tokens=16, tokenize_max_bytes=1 << 20
    )
    return counted.prompt_tokens, counted.image_tokens


SHOT = png_url(1280, 800, padding=1 << 20)
"""A 1 MB screenshot: 1,105 tokens to the provider (1280 × 800: 6 tiles)."""


@pytest.mark.parametrize(
    "item",
    [
        {"type": "computer_call_output", "call_id": "call_1", "output": {"image_url": SHOT}},
        {
            "type": "function_call_output",
            "call_id": "call_1",
            "output": [{"type": "input_image", "image_url": SHOT, "detail": "high"}],
        },
    ],
    ids=["screenshot", "function-output"],
)
def test_a_screenshot_is_counted_by_the_tile_rule_not_as_its_base64(item: dict[str, Any]) -> None:
    """Not a megabyte of text: a reservation of its JSON would refuse every computer-use step
    (a screenshot's output is one image whatever its object says; an image part anywhere is
    cut to its type before the item's JSON is counted)."""
    prompt, images = prompt_of([item])
    assert images == tile_tokens(1280, 800) == 1105
    assert images < prompt < images + 40


def test_images_are_found_wherever_an_item_carries_them() -> None:
    parts = [{"type": "input_text", "text": "done"}, {"type": "input_image", "file_id": "f-1"}]
    given = [
        {"role": "user", "content": [{"type": "input_image", "image_url": "https://x.test/a"}]},
        {"type": "function_call_output", "call_id": "c", "output": parts},
        {"type": "code_interpreter_call", "outputs": [{"type": "image", "url": "https://x/b"}]},
        {"type": "image_generation_call", "id": "ig", "result": png_url(512, 512)[22:]},
        {"type": "custom_tool_call_output", "output": [{"type": "input_file", "file_id": "f"}]},
    ]
    found = item_media.images(given, "input")
    assert [image.path for image in found] == [
        "input[0].content[0]",
        "input[1].output[1]",
        "input[2].outputs[0]",
        "input[3].result",
    ]
    assert item_media.files(given, "input") == ["input[4].output[0]"]
    # Each typed item's image counts by the tile rule: the unknown ones as the rule's worst
    # case, the generated one by the size its base64 says (on top of its JSON, see GENERATED).
    _, images = prompt_of(given[1:4])
    assert images == 2 * IMAGE_TOKENS + tile_tokens(512, 512)


def test_a_type_that_is_not_a_string_is_no_kind_and_no_error() -> None:
    """`type` may hold any JSON value in what a client sends: a list or an object there is
    counted by its JSON like any unknown object, never an error (it was a 500: an unhashable
    value looked up in a set)."""
    odd: list[Any] = [
        {"type": []},
        {"type": {}},
        {"type": "message", "role": "user", "content": [{"type": ["input_image"]}]},
        {"type": "function_call_output", "call_id": "c", "output": [{"type": {"x": 1}}]},
    ]
    assert item_media.images(odd, "input") == []
    assert item_media.files(odd, "input") == []
    assert item_media.without_images(odd) == odd


ORIGINAL = {"type": "input_image", "image_url": "https://x.test/a", "detail": "original"}


@pytest.mark.parametrize(
    ("given", "where"),
    [
        ([{"role": "user", "content": [ORIGINAL]}], "input[0].content[0].detail"),
        (
            [{"type": "function_call_output", "call_id": "c", "output": [ORIGINAL]}],
            "input[0].output[0].detail",
        ),
        (
            [{"type": "computer_call_output", "call_id": "c", "output": ORIGINAL}],
            "input[0].output.detail",
        ),
        (
            [
                {
                    "type": "custom_tool_call_output",
                    "output": [{"type": "image_url", "image_url": {"url": "u", "detail": 1}}],
                }
            ],
            "input[0].output[0].image_url.detail",
        ),
    ],
)
def test_a_detail_the_tile_rule_does_not_price_is_refused_where_it_is(
    given: list[Any], where: str
) -> None:
    """`original` sends the image at its own size: no tile count bounds it. Refused by the walk
    over the request (billable.py) and by the estimate alike."""
    for count in (lambda: item_media.images(given, "input"), lambda: prompt_of(given)):
        with pytest.raises(BadRequest) as refused:
            count()
        assert refused.value.code == "unpriced_feature" and refused.value.param == where
        assert "Use low, high or auto" in refused.value.message
