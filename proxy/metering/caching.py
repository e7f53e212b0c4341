"""Anthropic prompt caching: the cache writes a Messages request asks for. No I/O.

A `cache_control` breakpoint (at the top level, on a tool, or on any block of the system prompt
or of a message, however deep: inside a tool result, a search result, a document's content, a
web fetch result; shapes/blocks.py) asks Anthropic to write the prompt up to it (tools, then
system, then messages) to a cache, billed above the input price: the model's `cache_write` for
the default 5-minute TTL, its one-hour price for `ttl: "1h"`. Which tokens form that prefix
depends on Claude's own tokenizer, so the reservation holds the whole prompt at the price of
the longest TTL asked for: a bound on every prefix, whatever the breakpoints' order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.core.errors import BadRequest
from proxy.metering.shapes import blocks

TTLS = ("5m", "1h")
"""Anthropic's cache lifetimes, cheapest first."""


def longest_ttl(body: Mapping[str, Any]) -> tuple[str | None, str]:
    """The longest TTL the request's breakpoints ask for (None: no breakpoint), and where the
    first breakpoint is (e.g. `system[0].cache_control`). 400 for one the proxy cannot price."""
    found = [(path, _ttl(value, path)) for path, value in _cache_controls(body)]
    if not found:
        return None, ""
    return max((ttl for _, ttl in found), key=TTLS.index), found[0][0]


def writes(ttl: str | None, prompt: int) -> tuple[int, int]:
    """The prompt tokens reserved as 5-minute and as one-hour cache writes for a call whose
    longest TTL is `ttl`: all of them, at that TTL."""
    if ttl is None:
        return 0, 0
    return (0, prompt) if ttl == "1h" else (prompt, 0)


def _cache_controls(body: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Every `cache_control` a Messages request sets, with where: top level, each tool, and
    every block of the system prompt and the messages at any depth."""
    found = [("cache_control", body.get("cache_control"))]
    tools = body.get("tools")
    for index, tool in enumerate(tools if isinstance(tools, list) else ()):
        if isinstance(tool, dict):
            found.append((f"tools[{index}].cache_control", tool.get("cache_control")))
    for name in ("system", "messages"):
        found += [
            (f"{path}.cache_control", block.get("cache_control"))
            for path, block in blocks.objects(body.get(name), name)
        ]
    return [(path, value) for path, value in found if value is not None]


def _ttl(cache_control: Any, path: str) -> str:
    """The TTL a `cache_control` asks for; 400 for one the proxy cannot price."""
    given = cache_control if isinstance(cache_control, dict) else {}
    ttl = given.get("ttl", "5m")
    if given.get("type") != "ephemeral" or ttl not in TTLS:
        raise BadRequest(
            f"'{path}' must be {{\"type\": \"ephemeral\"}} with an optional 'ttl' of '5m' or "
            "'1h': the cache writes the proxy can price.",
            param=path,
        )
    return str(ttl)
