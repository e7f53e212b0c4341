"""The images and files a request carries, wherever they sit: in the parts of a message, or
outside them. No I/O.

A message carries them as content parts, and so do other `input` items: a `function_call_output`
or `custom_tool_call_output` whose `output` is a list of parts (input_text, input_image,
input_file), a `computer_call_output` whose `output` is a screenshot (whatever type it says), a
`code_interpreter_call` whose `outputs` hold images, an `image_generation_call` whose `result`
is the image it made; a stored prompt's `variables` may be images or files too. The provider
bills an image by its image rule and a file as a document, not by the few bytes of a URL or a
file id (nor a screenshot's base64 as text), so they are found by one walk over everything
below a point of the request rather than at the places today's API allows: each image is
counted by the tile rule (and refused on a model without one, billable.py), each file as a
document.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from proxy.metering.images import check_detail
from proxy.metering.text_counter import TextCounter

IMAGE_TYPES = frozenset({"input_image", "image_url", "computer_screenshot", "image"})
"""Objects that are an image: a content part (of either OpenAI API: a part of the other API's
type in a tool's output is still billed as an image), a computer-use screenshot, a code
interpreter's image output."""
DETAILED = frozenset({"input_image", "image_url"})
"""The image types that have a `detail`: a screenshot or an image output has none, so a `detail:
low` written on one is not honoured by the provider, nor by the reservation."""
SCREENSHOT_ITEM = "computer_call_output"
"""An item whose `output` is a screenshot: billed as an image whatever type the object says."""
FILE_TYPES = frozenset({"input_file"})
GENERATED = "image_generation_call"
"""An item whose `result` is an image in base64. What the provider bills for an image it made
and is sent back is not published: its JSON is counted as text and the image by the tile rule."""
_HEAD = 64 * 1024
"""Enough of a generated image's base64 for its size to be read (images.py reads no more)."""


@dataclass(frozen=True, slots=True)
class Image:
    """One image found, e.g. at `input[2].output`."""

    path: str
    url: str
    """Its URL, "" for a file id: a base64 data: URL is measured, any other costs the most."""
    detail: object


def media_tokens(counter: TextCounter, value: Any, path: str) -> int:
    """`value` by its JSON, but each image in it by the tile rule, its payload (a URL, a
    screenshot's base64) left out of the JSON."""
    tiles = sum(counter.image(image.url, image.detail) for image in images(value, path))
    return tiles + counter.count_json(without_images(value))


def images(value: Any, path: str) -> list[Image]:
    """Every image in `value` (at `path` of the request), at any depth."""
    found: list[Image] = []
    screenshots: set[int] = set()
    """The `output` objects of screenshot items met so far (the walk meets an item first)."""
    for where, obj in _objects(value, path):
        kind = _kind(obj)
        if id(obj) in screenshots:
            _detail(obj, where)
            found.append(Image(where, _url(obj), None))
        elif kind in IMAGE_TYPES:
            detail = _detail(obj, where)
            found.append(Image(where, _url(obj), detail if kind in DETAILED else None))
        elif kind == GENERATED and isinstance(obj.get("result"), str):
            url = "data:image/png;base64," + obj["result"][:_HEAD]
            found.append(Image(f"{where}.result", url, None))
        if kind == SCREENSHOT_ITEM and isinstance(obj.get("output"), dict):
            screenshots.add(id(obj["output"]))
    return found


def files(value: Any, path: str) -> list[str]:
    """Where the file inputs in `value` are, at any depth."""
    return [where for where, obj in _objects(value, path) if _kind(obj) in FILE_TYPES]


def without_images(value: Any) -> Any:
    """`value` with each image object cut down to its type: what is left is counted by its JSON,
    the images by the tile rule. (A generated image's `result` stays, see GENERATED.)"""
    if isinstance(value, list):
        return [without_images(item) for item in value]
    if not isinstance(value, dict):
        return value
    if _kind(value) in IMAGE_TYPES:
        return {"type": value["type"]}
    kept = {key: without_images(item) for key, item in value.items()}
    if _kind(value) == SCREENSHOT_ITEM and isinstance(value.get("output"), dict):
        kept["output"] = {"type": _kind(value["output"])}
    return kept


def _kind(obj: dict[str, Any]) -> str | None:
    """An object's `type` when it is a string (any other value names no kind the proxy
    knows, and cannot be looked up in a set)."""
    kind = obj.get("type")
    return kind if isinstance(kind, str) else None


def _objects(value: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON object in `value` (itself included), with its path. Nothing is skipped, as
    nothing is in without_images: what one finds, the other cuts."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _objects(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        yield path, value
        for key, item in value.items():
            if isinstance(item, dict | list):
                yield from _objects(item, f"{path}.{key}")


def _url(image: dict[str, Any]) -> str:
    url = image.get("image_url", image.get("url"))
    if isinstance(url, dict):  # a chat part: {"image_url": {"url": ..., "detail": ...}}
        url = url.get("url")
    return url if isinstance(url, str) else ""


def _detail(image: dict[str, Any], where: str) -> object:
    """An image's `detail` (None without one); 400 for one the tile rule does not bound, on
    any image, one whose detail the provider ignores included."""
    nested = image.get("image_url")
    if isinstance(nested, dict):  # a chat part: {"image_url": {"url": ..., "detail": ...}}
        detail, where = nested.get("detail"), f"{where}.image_url.detail"
    else:
        detail, where = image.get("detail"), f"{where}.detail"
    check_detail(detail, where)
    return detail
