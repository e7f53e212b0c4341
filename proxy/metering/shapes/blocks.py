"""Anthropic content blocks at any depth of a Messages request. No I/O.

Blocks nest: a tool result holds blocks, a search result inside it holds text blocks, a document
whose source is `{"type": "content"}` holds text and image blocks, a web fetch result holds a
document. Anything billed apart (a cache breakpoint, an image, a PDF) may sit at any of those
depths, so the proxy looks for it with one walk over every object below a point of the request,
rather than at the depths today's API happens to allow. The walk skips a tool call's `input`
(the model's own arguments, free-form JSON that may use any key) and the inside of a
`cache_control`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

FREE_FORM = frozenset({"input", "cache_control"})
"""Keys whose values are not content: a tool call's arguments, a breakpoint's settings."""


def objects(value: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON object in `value` (itself included), depth first, with its path from the
    request's root, e.g. `messages[2].content[0].content[0]`."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from objects(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        yield path, value
        for key, item in value.items():
            if key not in FREE_FORM and isinstance(item, dict | list):
                yield from objects(item, f"{path}.{key}")


def of_type(value: Any, path: str, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """The blocks of type `kind` in `value`, at any depth, with their paths."""
    return [(where, block) for where, block in objects(value, path) if block.get("type") == kind]
