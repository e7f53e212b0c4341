"""How the fake reads untrusted JSON (a list, an object or a string where it expects one, else
empty; every object nested in a value) and the size a PNG data URL declares.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from typing import Any

import orjson

Body = Mapping[str, Any]

_PNG = b"\x89PNG\r\n\x1a\n"


def png_size(url: object) -> tuple[int, int] | None:
    """The size a PNG data: URL's header declares."""
    if not isinstance(url, str) or not url.startswith("data:image/png;base64,"):
        return None
    try:
        head = base64.b64decode(url.split(",", 1)[1][:32])
    except ValueError:
        return None
    if head[:8] != _PNG or head[12:16] != b"IHDR" or len(head) < 24:
        return None
    width, height = struct.unpack(">II", head[16:24])
    return (width, height) if width and height else None


def inside(value: object) -> list[Body]:
    """`value` if it is an object, and every object nested in it, but for a tool call's
    arguments (`input`, the model's own JSON)."""
    if isinstance(value, list):
        return [found for item in value for found in inside(item)]
    if not isinstance(value, dict):
        return []
    nested = [found for key, item in value.items() if key != "input" for found in inside(item)]
    return [value, *nested]


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def as_dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def plain(value: object) -> str:
    """A string as itself; None as ""; anything else as its JSON (how the cookbook's f-strings
    would show a schema's list of types)."""
    if isinstance(value, str):
        return value
    return "" if value is None else orjson.dumps(value).decode()
