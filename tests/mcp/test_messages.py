"""The MCP front's message checks and outcome table, without a network: what a POST body must
be, the routing headers' agreement with it, and how each ending settles."""

from __future__ import annotations

import orjson
import pytest

from proxy.mcp import jsonrpc
from proxy.mcp.jsonrpc import RpcRefusal
from proxy.mcp.outcome import Ending, answers, charges, ending_of


def call(name: object = "send_email", **params: object) -> bytes:
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, **params}}
    return orjson.dumps(body)


@pytest.mark.parametrize(
    ("raw", "code", "words"),
    [
        (b"{not json", -32700, "not JSON"),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', -32600, "batches are not accepted"),
        (b'{"id":1,"method":"ping"}', -32600, "JSON-RPC 2.0"),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}', -32602, '"params" must be'),
        (b'{"jsonrpc":"2.0","id":[1],"method":"ping"}', -32600, '"id" must be'),
        (b'{"jsonrpc":"2.0","id":1}', -32600, 'no "method"'),
    ],
)
def test_a_body_that_is_not_one_message_is_refused(raw: bytes, code: int, words: str) -> None:
    with pytest.raises(RpcRefusal) as refused:
        jsonrpc.parse(raw)
    assert (refused.value.code, refused.value.status) == (code, 400)
    assert words in refused.value.message


def test_routing_headers_must_say_what_the_body_says() -> None:
    message = jsonrpc.parse(call())
    jsonrpc.check_routing({"Mcp-Method": "tools/call", "Mcp-Name": "send_email"}, message)
    for headers in ({"Mcp-Method": "tools/list"}, {"Mcp-Name": "delete_all"}):
        with pytest.raises(RpcRefusal) as refused:
            jsonrpc.check_routing(headers, message)
        assert refused.value.id == 7
        assert "must be equal" in refused.value.message


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (call("bad name!"), "is not accepted"),
        (call(None), "is not accepted"),
        (call("x" * 129), "is not accepted"),
        (call(task={"ttl": 1000}), "params.task"),
    ],
)
def test_odd_tool_names_and_tasks_are_refused(raw: bytes, words: str) -> None:
    with pytest.raises(RpcRefusal) as refused:
        jsonrpc.tool_call(jsonrpc.parse(raw))
    assert refused.value.code == -32602
    assert words in refused.value.message


def test_only_the_response_with_the_request_id_answers() -> None:
    progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}
    server_request = {"jsonrpc": "2.0", "id": 7, "method": "elicitation/create", "params": {}}
    assert not answers(progress, 7)
    assert not answers(server_request, 7)
    assert not answers({"jsonrpc": "2.0", "id": 8, "result": {}}, 7)
    assert answers({"jsonrpc": "2.0", "id": 7, "result": {}}, 7)
    assert answers({"jsonrpc": "2.0", "id": None, "error": {"code": 1}}, 7)


@pytest.mark.parametrize(
    ("answer", "ending"),
    [
        ({"result": {"content": []}}, Ending.RESULT),
        ({"result": {"content": [], "resultType": "complete"}}, Ending.RESULT),
        ({"result": {"content": [], "isError": True}}, Ending.TOOL_ERROR),
        ({"result": {"resultType": "input_required", "inputRequests": {}}}, Ending.INPUT_REQUIRED),
        ({"error": {"code": -32602, "message": "x"}}, Ending.PROTOCOL_ERROR),
        ({"error": {"code": -32800, "message": "Request cancelled"}}, Ending.CANCELLED),
        ({"result": "odd"}, Ending.FAILED),
    ],
)
def test_each_answer_has_its_ending(answer: dict[str, object], ending: Ending) -> None:
    assert ending_of(answer) is ending


def test_settle_rules() -> None:
    assert charges(Ending.RESULT, "released")
    for ending in (Ending.PROTOCOL_ERROR, Ending.INPUT_REQUIRED, Ending.REFUSED, Ending.NOT_SENT):
        assert not charges(ending, "reserved")
    for ending in (Ending.TOOL_ERROR, Ending.CANCELLED, Ending.TIMEOUT, Ending.FAILED):
        assert charges(ending, "reserved")
        assert not charges(ending, "released")
