"""The runtime form of what the policy says about MCP servers and their tools: each server
(`mcp_servers:`), each tool price (`actions:` keys `mcp:<server>/<tool-or-glob>`), and the globs
quotas and hide rules name tools by. No I/O.

A tool is named `mcp:<server>/<tool>` wherever the policy names one; a glob's server part is
always literal (the policy checks it names a server), so only its tool part matches (`*` and
`?`, as fnmatch, across `/` too).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from proxy.core.types import Unit

TOOL_PREFIX = "mcp:"
WILDCARDS = frozenset("*?")


@dataclass(frozen=True, slots=True)
class McpServer:
    """`mcp_servers[name]`: where the proxy relays `/mcp/{name}`, and how."""

    name: str
    url: str
    token_env: str | None = None
    """The environment variable holding the server's credential; None: none is sent."""
    auth: Literal["bearer", "x-api-key", "api-key"] = "bearer"
    unpriced_tools: Literal["deny", "allow"] = "deny"
    """A tools/call no `actions:` key prices: refused, or relayed at zero cost."""
    timeout_ms: int = 300_000
    """A tools/call's whole answer."""


@dataclass(frozen=True, slots=True)
class ToolPrice:
    """What a call to a tool reserves: `amount` of `unit` (an action unit, or USD)."""

    key: str
    """The actions key as written, e.g. "mcp:crm/*"."""
    unit: Unit
    amount: int
    charge_on_error: Literal["reserved", "released"] = "reserved"
    """An isError result or a timeout: charge the reservation, or release it."""

    @property
    def server(self) -> str:
        return split_key(self.key)[0]

    @property
    def pattern(self) -> str:
        """The tool part: a name, or a glob."""
        return split_key(self.key)[1]


def tool_key(server: str, tool: str) -> str:
    return f"{TOOL_PREFIX}{server}/{tool}"


def split_key(key: str) -> tuple[str, str]:
    """`mcp:crm/delete_*` → ("crm", "delete_*"); the caller checked it starts with `mcp:`."""
    server, _, tool = key.removeprefix(TOOL_PREFIX).partition("/")
    return server, tool


def is_glob(pattern: str) -> bool:
    return any(c in WILDCARDS for c in pattern)


def specificity(pattern: str) -> int:
    """How much of a glob is literal: its characters other than `*` and `?`."""
    return sum(c not in WILDCARDS for c in pattern)


def matches(glob: str, server: str, tool: str) -> bool:
    """Whether a glob over `mcp:<server>/<tool>` names this tool of this server."""
    glob_server, pattern = split_key(glob)
    return glob_server == server and fnmatch.fnmatchcase(tool, pattern)


def any_matches(globs: Iterable[str], server: str, tool: str) -> bool:
    return any(matches(glob, server, tool) for glob in globs)


def price_lookup(prices: tuple[ToolPrice, ...], server: str, tool: str) -> ToolPrice | None:
    """The price of a call to (server, tool): the exact key, else the matching glob with the
    most literal characters (ties: the first written), else None (unpriced)."""
    key = tool_key(server, tool)
    exact = next((p for p in prices if p.key == key), None)
    if exact is not None:
        return exact
    best: ToolPrice | None = None
    for price in prices:
        if not is_glob(price.key) or not matches(price.key, server, tool):
            continue
        if best is None or specificity(price.key) > specificity(best.key):
            best = price
    return best
