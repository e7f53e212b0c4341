"""Where a Responses request declares tools (proxy/metering/shapes/tool_lists.py), as
billable.read prices them and tool_uses counts their calls: a namespace and a tool search the
client runs are billed by their tokens alone, the tools in a namespace, and those a
`tool_search_output` input item loads, as if they were in `tools`; a search the provider runs is
a hosted tool; the `tool_search_call` items of a client search are no hosted calls."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.core.errors import BadRequest
from proxy.metering import billable
from proxy.metering.tool_uses import responses_tool_calls

FUNCTION = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
CLIENT_SEARCH = {"type": "tool_search", "execution": "client"}


def namespace(*tools: Any) -> dict[str, Any]:
    return {"type": "namespace", "name": "crm", "description": "CRM", "tools": list(tools)}


def loading(*tools: Any) -> dict[str, Any]:
    return {"type": "tool_search_output", "execution": "client", "tools": list(tools)}


def read(tools: list[Any], given: Any = "hi") -> billable.Billables:
    return billable.read("responses", {"tools": tools, "input": given}, (), 4)


@pytest.mark.parametrize(
    ("tools", "given", "hosted"),
    [
        ([namespace(FUNCTION)], "hi", ()),
        ([CLIENT_SEARCH], "hi", ()),
        ([namespace(FUNCTION), CLIENT_SEARCH], [loading(namespace(FUNCTION))], ()),
        ([namespace(FUNCTION, {"type": "web_search_preview"})], "hi", ("web_search",)),
        ([{"type": "tool_search"}], "hi", ("tool_search",)),
        ([{"type": "tool_search", "execution": "server"}], "hi", ("tool_search",)),
        ([CLIENT_SEARCH], [loading({"type": "file_search"})], ("file_search",)),
        ([CLIENT_SEARCH], [loading(namespace({"type": "mcp"}))], ("mcp",)),
    ],
    ids=[
        "namespace",
        "client-search",
        "loaded-functions",
        "hosted-in-namespace",
        "server-search",
        "server-search-named",
        "hosted-loaded",
        "hosted-in-a-loaded-namespace",
    ],
)
def test_the_hosted_tools_a_request_enables_wherever_it_declares_them(
    tools: list[Any], given: Any, hosted: tuple[str, ...]
) -> None:
    assert read(tools, given).pooled == hosted


@pytest.mark.parametrize(
    ("tools", "given", "where"),
    [
        ([namespace(FUNCTION, "web_search")], "hi", "tools[0].tools[1]"),
        ([namespace({"type": 7})], "hi", "tools[0].tools[0].type"),
        ([namespace({"name": "lookup"})], "hi", "tools[0].tools[0].type"),
        ([{**namespace(), "tools": {"type": "web_search"}}], "hi", "tools[0].tools"),
        ([{**namespace(), "tools": None}], "hi", "tools[0].tools"),
        ([namespace(namespace(["x"]))], "hi", "tools[0].tools[0].tools[0]"),
        ([CLIENT_SEARCH], ["hi", loading(FUNCTION, 5)], "input[1].tools[1]"),
        ([CLIENT_SEARCH], [loading(namespace({"type": None}))], "input[0].tools[0].tools[0].type"),
    ],
)
def test_a_tool_in_a_namespace_or_loaded_by_a_search_is_checked_as_tools_are(
    tools: list[Any], given: Any, where: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        read(tools, given)
    assert refused.value.param == where and refused.value.message.startswith(where)


def test_a_namespace_on_another_api_is_not_read_for_tools() -> None:
    """Only Responses has namespaces: a chat tool of that type is checked as any chat tool."""
    body = {"tools": [{"type": "namespace", "tools": "x"}], "messages": []}
    assert billable.read("chat", body, (), 4).tools


def test_a_client_tool_search_call_is_no_hosted_call_and_a_server_one_is() -> None:
    output = [
        {"type": "tool_search_call", "id": "ts_1", "execution": "client", "arguments": {}},
        {"type": "tool_search_call", "id": "ts_2", "execution": "server", "arguments": {}},
        {"type": "tool_search_output", "id": "tso_2", "execution": "server", "tools": []},
        {"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "namespace": "crm"},
    ]
    assert responses_tool_calls(output) == (("tool_search", 1),)
