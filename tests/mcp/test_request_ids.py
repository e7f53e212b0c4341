"""Two requests with one JSON-RPC id in one session. The MCP SDK's server keys a POST's
answer stream by str(id), so a second POST reusing an id in flight would take over the first's
stream: the first call's answer never reaches its POST, the proxy waits out timeout_seconds and
settles it as TIMEOUT, which a `charge_on_error: released` tool (the README's delete_*) releases,
though the tool ran. The proxy refuses (409) a request whose id (as the server keys it: 7 and
"7" alike) is already in flight in the session, and frees the id when the first ends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from mcp_support import POLICY, Upstream, emails, sse_upstream

from proxy.core import tasks
from proxy.policy import load_policy
from proxy.testing.local import Stack, local_stack

__all__ = ["sse_upstream"]

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def post(stack: Stack, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(stack.url + "/mcp/crm", data=orjson.dumps(body), headers=headers) as answer,
    ):
        await answer.read()
        return answer.status, dict(answer.headers)


async def test_a_reused_id_cannot_make_a_released_tool_free(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    text = POLICY.format(url=sse_upstream.url, timeout=4, fail_rule="released", unpriced="allow")
    text = text.replace(
        '"mcp:crm/slow": {{EMAILS: 1}}'.replace("{{", "{").replace("}}", "}"),
        '"mcp:crm/slow": {EMAILS: 1, charge_on_error: released}',
    )
    assert 'charge_on_error: released}\n  "mcp:crm/progress' in text
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    async with local_stack(load_policy(path), sweep_every=None) as stack:
        base = {**ACCEPT, "X-Cycles-Tenant": "acme"}
        params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
        status, headers = await post(stack, init, base)
        assert status == 200
        session = {**base, "Mcp-Session-Id": headers["mcp-session-id"]}
        session["MCP-Protocol-Version"] = "2025-11-25"
        await post(stack, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        done = sse_upstream.slow_done()
        slow = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
        slow["params"] = {"name": "slow", "arguments": {"seconds": 1}}
        ping = {"jsonrpc": "2.0", "id": "7", "method": "tools/call", "params": {"name": "ping"}}
        pings = sse_upstream.pings()
        first = tasks.spawn(post(stack, slow, session), name="slow call")
        await asyncio.sleep(0.3)  # the slow call is in flight
        status, _ = await post(stack, ping, session)
        assert status == 409  # refused: the server never saw the reused id
        assert sse_upstream.pings() == pings
        assert (await first)[0] == 200
        assert sse_upstream.slow_done() == done + 1  # the tool ran
        spent, reserved = await emails(stack)
        assert reserved == 0
        assert spent == 1, "slow ran but its reservation was released (a forced TIMEOUT)"
        # Once the first call ended its id is free again.
        assert (await post(stack, ping, session))[0] == 200
        assert sse_upstream.pings() == pings + 1
