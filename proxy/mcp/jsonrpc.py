"""JSON-RPC messages as the MCP front sees them: a client's POST body checked (one message, a
method the routing headers agree with, a tool name the proxy accepts), and the bodies the
proxy answers with itself (errors, and a tool's `isError` result). No I/O.

An MCP client raises the code and message of a JSON-RPC error body whatever the HTTP status
(mcp's streamable_http client), so every refusal is one: never a bare status, never a trace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from multidict import CIMultiDictProxy

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

TOOL_NAME = re.compile(r"[A-Za-z0-9_.\-/]{1,128}")
"""A tool name the proxy forwards (the design's); anything else is refused before the server
sees it."""


class RpcRefusal(Exception):
    """A message the proxy answers itself with a JSON-RPC error, at `status`."""

    def __init__(self, message: str, *, code: int = INVALID_REQUEST, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status
        self.id: Any = None
        self.headers: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class Message:
    """One JSON-RPC message a client POSTed."""

    body: Mapping[str, Any]
    id: Any = None
    method: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_request(self) -> bool:
        """A request expects an answer (a notification or a response to the server does not)."""
        return self.method is not None and "id" in self.body


def parse(raw: bytes) -> Message:
    """The one message of a POST body; RpcRefusal (400) for anything else."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RpcRefusal("The request body is not JSON.", code=PARSE_ERROR) from None
    if isinstance(body, list):
        raise RpcRefusal(
            "JSON-RPC batches are not accepted: send one message per POST, as MCP's Streamable "
            "HTTP transport does."
        )
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
        raise RpcRefusal(
            'The body is not a JSON-RPC 2.0 message (an object with "jsonrpc": "2.0").'
        )
    method, params = body.get("method"), body.get("params", {})
    refusal = _malformed(body, method, params)
    if refusal is not None:
        refusal.id = body.get("id")
        raise refusal
    return Message(body, body.get("id"), method, params)


def _malformed(body: Mapping[str, Any], method: Any, params: Any) -> RpcRefusal | None:
    if method is not None and not isinstance(method, str):
        return RpcRefusal('"method" must be a string.')
    if method is None and "result" not in body and "error" not in body:
        return RpcRefusal('The message has no "method", "result" or "error".')
    if not isinstance(params, dict):
        return RpcRefusal('"params" must be an object.', code=INVALID_PARAMS)
    message_id = body.get("id")
    if message_id is not None and not isinstance(message_id, (str, int)):
        return RpcRefusal('"id" must be a string or an integer.')
    return None


SINGLE_HEADERS = ("Mcp-Method", "Mcp-Name", "Mcp-Session-Id", "MCP-Protocol-Version")
"""Headers a request may carry once: the proxy checks one value, and a server or gateway that
read another copy (the last, or "a, b" joined) would act on what the proxy did not check."""


def check_single(headers: CIMultiDictProxy[str]) -> None:
    """RpcRefusal (400) when a routing or session header comes more than once."""
    for name in SINGLE_HEADERS:
        if len(headers.getall(name, ())) > 1:
            raise RpcRefusal(f"The {name} header is sent more than once; send it once.")


def check_routing(headers: Mapping[str, str], message: Message) -> None:
    """The modern transport's routing headers must say what the body says: `Mcp-Method` its
    method, `Mcp-Name` its tool or prompt name (or resource uri). A server or gateway routing by
    the header would otherwise act on a call the proxy did not budget."""
    said = headers.get("Mcp-Method")
    if said is not None and said != message.method:
        raise _mismatch("Mcp-Method", said, message.method, message.id)
    named = headers.get("Mcp-Name")
    if named is not None:
        actual = message.params.get("name", message.params.get("uri"))
        if named != actual:
            raise _mismatch("Mcp-Name", named, actual, message.id)


def _mismatch(header: str, said: str, actual: Any, message_id: Any) -> RpcRefusal:
    refusal = RpcRefusal(
        f"The {header} header says {said!r} but the body says {actual!r}; they must be equal."
    )
    refusal.id = message_id
    return refusal


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A `tools/call` request, checked."""

    id: Any
    name: str


def tool_call(message: Message) -> ToolCall:
    """The call's tool, checked; RpcRefusal for a notification (no id, or a null one: the
    server never runs it, so it is never reserved), for a name the proxy does not accept and for
    a task (`params.task`: its answer comes later, through `tasks/result`, and cannot be
    settled)."""
    if message.id is None:
        raise RpcRefusal(
            'A tools/call without an "id" (or with a null one) is a notification, which the '
            'server does not run: give the call an "id".'
        )
    name = message.params.get("name")
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        refusal = RpcRefusal(
            f"Tool name {name!r} is not accepted: use 1 to 128 letters, digits and _ . - /.",
            code=INVALID_PARAMS,
        )
        refusal.id = message.id
        raise refusal
    if "task" in message.params:
        refusal = RpcRefusal(
            "Task-augmented tool calls (params.task) are not supported through this proxy: its "
            "budget settles when the call answers. Call the tool without params.task.",
            code=INVALID_PARAMS,
        )
        refusal.id = message.id
        raise refusal
    return ToolCall(message.id, name)


def error_body(
    message_id: Any, code: int, message: str, data: Mapping[str, Any] | None = None
) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if data:
        error["data"] = dict(data)
    return orjson.dumps({"jsonrpc": "2.0", "id": message_id, "error": error})


def tool_error(message_id: Any, text: str) -> bytes:
    """A tool's result with `isError`: what a model reads (and can stop on), not an exception.
    `resultType` is required from protocol 2026-07-28 on; earlier versions let a result carry
    keys they do not know."""
    content = [{"type": "text", "text": text}]
    result = {"content": content, "isError": True, "resultType": "complete"}
    return orjson.dumps({"jsonrpc": "2.0", "id": message_id, "result": result})
