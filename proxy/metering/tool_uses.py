"""The hosted tool calls an answer says it made, which are billed per call (billable_reserve.py
prices them). No I/O."""

from __future__ import annotations

from typing import Any

from proxy.metering.billable import PER_CONTAINER, ToolCalls, is_count, responses_tool
from proxy.metering.shapes.tool_lists import runs_on_client


def responses_tool_calls(output: Any) -> ToolCalls:
    """Hosted tool calls in a response's `output` items (`web_search_call`, ...), by tool;
    code_interpreter counts its distinct containers. A call the client runs (a client tool
    search's `tool_search_call`, `execution: client`) is billed by its tokens alone."""
    counts: dict[str, int] = {}
    containers: set[object] = set()
    for item in output if isinstance(output, list) else ():
        kind = item.get("type") if isinstance(item, dict) else None
        if not isinstance(kind, str) or not kind.endswith("_call") or runs_on_client(item):
            continue
        tool = responses_tool(kind.removesuffix("_call"))
        if tool == PER_CONTAINER:
            container = item.get("container_id")
            if container is not None and container in containers:
                continue
            containers.add(container if container is not None else object())
        if tool is not None:
            counts[tool] = counts.get(tool, 0) + 1
    return tuple(sorted(counts.items()))


def anthropic_tool_calls(server_tool_use: Any) -> ToolCalls:
    """Server tool calls in an Anthropic usage's `server_tool_use` (`web_search_requests`...)."""
    if not isinstance(server_tool_use, dict):
        return ()
    return tuple(
        sorted(
            (name.removesuffix("_requests"), n)
            for name, n in server_tool_use.items()
            if name.endswith("_requests") and is_count(n) and n > 0
        )
    )
