"""An MCP server (the mcp SDK's MCPServer) for the MCP front's tests, run as a subprocess by
mcp_support.py: python mcp_upstream.py PORT DIR [--json]

Tools: send_email(to) (each call appends `to` to DIR/sent), ping() (a line to DIR/pings),
fail() (raises: an isError result), slow(seconds) (a line to DIR/slow when done), progress(n)
(n progress notifications, then its result), confirm_send(to) (asks the client to confirm,
through the SDK's Resolve/Elicit: mid-call elicitation/create in the handshake era, an
input_required result in 2026-07-28; a yes appends `to` to DIR/confirmed, a no answers
"not sent" without isError). Every request's
headers are appended to DIR/headers as JSON lines, every POSTed message's id, method and whether
it is a response to DIR/messages. Two tool names are answered by the wrapper
without reaching the server: `protocol_error` (a JSON-RPC error) and `crash` (HTTP 500).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve
from pydantic import BaseModel

PORT, DIR = int(sys.argv[1]), Path(sys.argv[2])
server = MCPServer("crm")


@server.tool()
def send_email(to: str) -> str:
    """Send an email."""
    with (DIR / "sent").open("a") as sent:
        sent.write(to + "\n")
    return f"sent to {to}"


@server.tool()
def ping() -> str:
    """Answer pong."""
    with (DIR / "pings").open("a") as pings:
        pings.write("pong\n")
    return "pong"


@server.tool()
def fail() -> str:
    """Always fails."""
    raise RuntimeError("boom")


@server.tool()
async def slow(seconds: float) -> str:
    """Answer after `seconds`."""
    await asyncio.sleep(seconds)
    with (DIR / "slow").open("a") as done:
        done.write("done\n")
    return "slow done"


@server.tool()
async def progress(n: int, ctx: Context) -> str:
    """Report progress n times, then answer."""
    for i in range(n):
        await ctx.report_progress(i + 1, n, f"step {i + 1}")
        await asyncio.sleep(0.02)
    return "progress done"


class Confirmation(BaseModel):
    send: bool


def ask(to: str) -> Elicit[Confirmation]:
    return Elicit(f"Send the email to {to}?", Confirmation)


@server.tool()
def confirm_send(to: str, answer: Annotated[ElicitationResult[Confirmation], Resolve(ask)]) -> str:
    """Send an email once the user confirms it."""
    if not isinstance(answer, AcceptedElicitation) or not answer.data.send:
        return f"not sent to {to}"
    with (DIR / "confirmed").open("a") as confirmed:
        confirmed.write(to + "\n")
    return f"sent to {to}"


def wrap(app: Any) -> Any:
    """Log each request's headers; answer `protocol_error` and `crash` tool calls itself."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        with (DIR / "headers").open("a") as log:
            log.write(json.dumps({"method": scope["method"], **headers}) + "\n")
        body, messages = b"", []
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        _note(body)
        answer = _injected(body)
        if answer is not None:
            status, payload = answer
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            return await send({"type": "http.response.body", "body": payload})
        pending = iter(messages)

        async def replay() -> Any:
            return next(pending, None) or await receive()

        await app(scope, replay, send)

    return wrapped


def _note(body: bytes) -> None:
    """Each POSTed message's id, method and whether it is a response, to DIR/messages."""
    try:
        message = json.loads(body)
    except ValueError:
        return
    if isinstance(message, dict):
        noted = {"id": message.get("id"), "method": message.get("method")}
        noted["response"] = "result" in message or "error" in message
        with (DIR / "messages").open("a") as log:
            log.write(json.dumps(noted) + "\n")


def _injected(body: bytes) -> tuple[int, bytes] | None:
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return None
    name = message.get("params", {}).get("name")
    if name == "protocol_error":
        error = {"code": -32602, "message": "no such argument"}
        return 200, json.dumps({"jsonrpc": "2.0", "id": message["id"], "error": error}).encode()
    if name == "crash":
        error = {"code": -32603, "message": "server exploded"}
        return 500, json.dumps({"jsonrpc": "2.0", "id": message["id"], "error": error}).encode()
    return None


if __name__ == "__main__":
    app = server.streamable_http_app(json_response="--json" in sys.argv)
    uvicorn.run(wrap(app), host="127.0.0.1", port=PORT, log_level="warning")
