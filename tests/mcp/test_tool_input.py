"""A tool that needs the client's input in the middle of its call (tests/mcp_upstream.py's
confirm_send, priced {EMAILS: 1}), through the proxy with the official Client, in both eras:

- handshake era (SSE answers): the server asks `elicitation/create` inside the tools/call's
  stream, the client answers with a POST of its own (a response: no method, the server's id,
  which may be the call's own id), the tool finishes: one reservation, settled once;
- 2026-07-28: the first answer is `resultType: input_required` (released), the Client asks
  again with the input responses under a new id (reserved again) and that one settles; a
  budget spent while the client was answering denies the second round, and nothing is sent."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from mcp import types
from mcp_support import Upstream, client, emails, proxy, sse_upstream

from proxy.testing.local import Stack

__all__ = ["sse_upstream"]

TOOL = "mcp:crm/confirm_send"


def answering(send: bool, asked: list[str]) -> Any:
    """An elicitation callback that accepts with `send` (False: declines), noting each ask."""

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        if not send:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content={"send": True})

    return elicit


async def settles(stack: Stack, tenant: str) -> list[tuple[str, str]]:
    """The tenant's audit of `TOOL`, in order: (kind, reservation) of each allowed reserve,
    denial, commit and release of its reservations."""
    trail = await stack.stores.tenants.audit(tenant)
    ours = {e.fields["reservation"] for e in trail if e.fields.get("action") == TOOL}
    found = []
    for entry in sorted(trail, key=lambda e: tuple(map(int, e.id.split("-")))):
        if entry.fields.get("reservation") not in ours:
            continue
        kind = entry.kind
        if kind == "reserve":
            kind = "allowed" if entry.fields.get("decision") == "ALLOW" else "denied"
        found.append((kind, entry.fields["reservation"]))
    return found


async def test_legacy_elicitation_mid_call_is_one_reservation_committed_once(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    to, asked = f"l-{secrets.token_hex(4)}", []
    async with (
        proxy(tmp_path, sse_upstream) as stack,
        client(stack, "frugal", elicit=answering(True, asked)) as mcp,
    ):
        result = await mcp.call_tool("confirm_send", {"to": to})
        assert not result.is_error, result
        assert asked == [f"Send the email to {to}?"]
        assert sse_upstream.confirmed(to) == [to]
        assert await emails(stack, "frugal") == (1, 0)
        trail = await settles(stack, "frugal")
        assert [kind for kind, _ in trail] == ["allowed", "commit"]
        assert trail[0][1] == trail[1][1]


INFO = {"name": "raw", "version": "1"}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def opened(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    """A handshake-era session that can answer elicitations: its later requests' headers."""
    base = {**ACCEPT, "X-Cycles-Tenant": "frugal"}
    capabilities = {"elicitation": {"form": {}}}
    params = {"protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": INFO}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    async with http.post(url, data=orjson.dumps(init), headers=base) as answer:
        assert answer.status == 200
        await answer.read()
        session = {**base, "Mcp-Session-Id": answer.headers["Mcp-Session-Id"]}
    session["MCP-Protocol-Version"] = "2025-11-25"
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with http.post(url, data=orjson.dumps(note), headers=session) as answer:
        assert answer.status == 202
    return session


async def test_the_clients_answer_may_carry_the_calls_own_id(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    """The server numbers its requests on its own: its elicitation/create is id 1 while the
    client's tools/call id 1 is in flight. The client's answer (a response: no method) is no
    request, so the proxy claims no id for it and relays it (no 409); the call then settles
    once."""
    to = f"i-{secrets.token_hex(4)}"
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    call["params"] = {"name": "confirm_send", "arguments": {"to": to}}
    timeout = aiohttp.ClientTimeout(total=20)
    async with (
        proxy(tmp_path, sse_upstream, server_timeout=5) as stack,
        aiohttp.ClientSession(timeout=timeout) as http,
    ):
        url = stack.url + "/mcp/crm"
        session = await opened(http, url)
        seen = []
        async with http.post(url, data=orjson.dumps(call), headers=session) as stream:
            async for line in stream.content:
                if not line.startswith(b"data: "):
                    continue
                message = orjson.loads(line[6:])
                seen.append((message.get("id"), message.get("method")))
                if message.get("method") == "elicitation/create":
                    reply = {"jsonrpc": "2.0", "id": message["id"]}
                    reply["result"] = {"action": "accept", "content": {"send": True}}
                    body = orjson.dumps(reply)
                    async with http.post(url, data=body, headers=session) as answered:
                        assert answered.status == 202, await answered.text()
        assert seen == [(1, "elicitation/create"), (1, None)], message
        assert message["result"]["isError"] is False
        assert sse_upstream.confirmed(to) == [to]
        assert await emails(stack, "frugal") == (1, 0)
        assert [kind for kind, _ in await settles(stack, "frugal")] == ["allowed", "commit"]


async def test_legacy_declined_elicitation_is_a_result_without_is_error_so_committed(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    """The tool answers a no with a plain result ("not sent"): the README's first row, so the
    reservation is committed though nothing was sent (a tool that wants a no free answers it
    with isError under `charge_on_error: released`)."""
    to, asked = f"d-{secrets.token_hex(4)}", []
    async with (
        proxy(tmp_path, sse_upstream) as stack,
        client(stack, "frugal", elicit=answering(False, asked)) as mcp,
    ):
        result = await mcp.call_tool("confirm_send", {"to": to})
        assert not result.is_error
        assert result.content[0].text == f"not sent to {to}"  # type: ignore[union-attr]
        assert len(asked) == 1
        assert sse_upstream.confirmed(to) == []
        assert await emails(stack, "frugal") == (1, 0)
        assert [kind for kind, _ in await settles(stack, "frugal")] == ["allowed", "commit"]


async def test_modern_input_required_is_released_and_the_retry_committed(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    to, asked = f"m-{secrets.token_hex(4)}", []
    async with (
        proxy(tmp_path, sse_upstream) as stack,
        client(stack, "frugal", "2026-07-28", elicit=answering(True, asked)) as mcp,
    ):
        result = await mcp.call_tool("confirm_send", {"to": to})
        assert not result.is_error, result
        assert asked == [f"Send the email to {to}?"]
        assert sse_upstream.confirmed(to) == [to]
        assert await emails(stack, "frugal") == (1, 0)
        trail = await settles(stack, "frugal")
        assert [kind for kind, _ in trail] == ["allowed", "release", "allowed", "commit"]
        first, second = trail[0][1], trail[2][1]
        assert first != second
        assert trail[1][1] == first and trail[3][1] == second


async def test_modern_budget_spent_while_the_client_answers_denies_the_retry(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    """Budget 1: the first round reserves it and releases it (input_required); while the client
    answers, another call spends it; the retry is denied with an isError result and the server
    never runs the tool's second round, so nothing is sent."""
    to, other = f"x-{secrets.token_hex(4)}", f"o-{secrets.token_hex(4)}"
    async with proxy(tmp_path, sse_upstream) as stack:
        spent: list[bool] = []

        async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            async with client(stack, "lone", "2026-07-28") as rival:
                spent.append(not (await rival.call_tool("send_email", {"to": other})).is_error)
            return types.ElicitResult(action="accept", content={"send": True})

        async with client(stack, "lone", "2026-07-28", elicit=elicit) as mcp:
            result = await mcp.call_tool("confirm_send", {"to": to})
        assert spent == [True]
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert "Budget exceeded on tenant: 0 EMAILS remaining of 1 EMAILS" in text
        assert sse_upstream.confirmed(to) == []
        assert sse_upstream.sent(other) == [other]
        assert await emails(stack, "lone") == (1, 0)
        trail = await settles(stack, "lone")
        assert [kind for kind, _ in trail] == ["allowed", "release", "denied"]
