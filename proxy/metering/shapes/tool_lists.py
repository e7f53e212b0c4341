"""Where a Responses request declares tools, and which of them the client runs. No I/O.

Besides `tools`, tools sit inside a `namespace` tool (openai-agents' `tool_namespace` groups
function tools under a name), and a `tool_search_output` item of the input loads tools a tool
search found, which the provider adds to the call's tools. A hosted tool is billed per call
wherever it is declared, so billable.py prices (or refuses) each of them as if it were in
`tools`; a namespace itself, and a tool search the client runs, are billed by their tokens
alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NAMESPACE = "namespace"
"""A tool that groups tools under a name: billed by its tokens alone, each tool in it priced (or
refused) as if it were in `tools`."""
TOOL_SEARCH = "tool_search"
"""A tool that loads deferred tools: with `execution: client` the client runs the search, billed
by its tokens alone (its `tool_search_call` items too); run by the provider, a hosted tool like
any other."""
LOADED = "tool_search_output"
"""The input item that carries the tools a search loaded."""


def tool_types(tools: Any) -> list[str]:
    """The types of the tools in a `tools` list that may bill apart: those inside namespaces
    too, not the namespaces themselves nor a tool search the client runs."""
    kinds: list[str] = []
    for tool in tools if isinstance(tools, list) else ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == NAMESPACE:
            kinds += tool_types(tool.get("tools"))
        elif isinstance(kind, str) and not (kind == TOOL_SEARCH and runs_on_client(tool)):
            kinds.append(kind)
    return kinds


def loaded_tools(items: Any) -> list[tuple[str, Any]]:
    """The `tools` of each tool_search_output item of a Responses `input`, with where they are
    (`input[3].tools`)."""
    return [
        (f"input[{index}].tools", item.get("tools"))
        for index, item in enumerate(items if isinstance(items, list) else ())
        if isinstance(item, dict) and item.get("type") == LOADED
    ]


def runs_on_client(item: Mapping[str, Any]) -> bool:
    """A tool, or an output item of its call, that the client runs: `execution: client`."""
    return item.get("execution") == "client"
