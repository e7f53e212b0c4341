"""Two requests with one JSON-RPC id in one session. The MCP SDK's server keys a POST's
answer stream by str(id), so a second POST reusing an id in flight would take over the first's
stream: the first call's answer never reaches its POST, the proxy waits out timeout_seconds and
settles it as TIMEOUT, which a `charge_on_error: released` tool (the README's delete_*) releases,
though the tool ran. The proxy refuses (409) a request whose id (as the server keys it: 7 and
"7" alike) is already in flight in the session, whatever its method, and frees the id when the
first ends; the ids are claimed in the shared store, so two replicas on one Redis refuse alike."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from mcp_support import POLICY, Upstream, emails, sse_upstream

from proxy.core import tasks
from proxy.core.errors import LedgerUnavailable
from proxy.gateway.context import MCP_SESSIONS
from proxy.policy import Policy, load_policy
from proxy.testing.local import Stack, local_stack

__all__ = ["sse_upstream"]

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def post_read(stack: Stack, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    """The status and the JSON body of a POST answered in JSON."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(stack.url + "/mcp/crm", data=orjson.dumps(body), headers=headers) as answer,
    ):
        return answer.status, orjson.loads(await answer.read())


async def post(stack: Stack, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(stack.url + "/mcp/crm", data=orjson.dumps(body), headers=headers) as answer,
    ):
        await answer.read()
        return answer.status, dict(answer.headers)


def released(tmp_path: Path, upstream: Upstream) -> Policy:
    """The support policy with `slow` a `charge_on_error: released` tool."""
    text = POLICY.format(url=upstream.url, timeout=4, fail_rule="released", unpriced="allow")
    text = text.replace(
        '"mcp:crm/slow": {{EMAILS: 1}}'.replace("{{", "{").replace("}}", "}"),
        '"mcp:crm/slow": {EMAILS: 1, charge_on_error: released}',
    )
    assert 'charge_on_error: released}\n  "mcp:crm/progress' in text
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


async def open_session(stack: Stack) -> dict[str, str]:
    """A legacy-era session opened through `stack`: the headers of its later requests."""
    base = {**ACCEPT, "X-Cycles-Tenant": "acme"}
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    status, headers = await post(stack, init, base)
    assert status == 200
    session = {**base, "Mcp-Session-Id": headers["mcp-session-id"]}
    session["MCP-Protocol-Version"] = "2025-11-25"
    await post(stack, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    return session


SLOW = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
SLOW["params"] = {"name": "slow", "arguments": {"seconds": 1}}
PING_TOOL = {"jsonrpc": "2.0", "id": "7", "method": "tools/call", "params": {"name": "ping"}}
PING = {"jsonrpc": "2.0", "id": 7, "method": "ping"}


async def reuse_while_slow(
    first: Stack, second: Stack, session: dict[str, str], upstream: Upstream
) -> None:
    """Id 7 reused through `second` while the slow call runs through `first`: refused, never
    sent, whatever its method; the slow call charged once it ends; then the id is free again."""
    done, pings = upstream.slow_done(), upstream.pings()
    running = tasks.spawn(post(first, SLOW, session), name="slow call")
    await asyncio.sleep(0.3)  # the slow call is in flight
    assert (await post(second, PING_TOOL, session))[0] == 409  # the server never saw it
    assert (await post(second, PING, session))[0] == 409  # a ping alike
    assert upstream.pings() == pings
    assert (await running)[0] == 200
    assert upstream.slow_done() == done + 1  # the tool ran
    spent, reserved = await emails(first)
    assert reserved == 0
    assert spent == 1, "slow ran but its reservation was released (a forced TIMEOUT)"
    # Once the first call ended its id is free again.
    assert (await post(second, PING_TOOL, session))[0] == 200
    assert upstream.pings() == pings + 1


async def test_a_reused_id_cannot_make_a_released_tool_free(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    async with local_stack(released(tmp_path, sse_upstream), sweep_every=None) as stack:
        session = await open_session(stack)
        await reuse_while_slow(stack, stack, session, sse_upstream)


async def test_an_id_in_flight_on_one_replica_is_refused_on_another(
    tmp_path: Path, sse_upstream: Upstream, redis_url: str
) -> None:
    policy = released(tmp_path, sse_upstream)
    async with (
        local_stack(policy, store=redis_url, sweep_every=None) as first,
        local_stack(policy, store=redis_url, sweep_every=None) as second,
    ):
        session = await open_session(first)
        await reuse_while_slow(first, second, session, sse_upstream)


async def test_the_store_unreachable_at_the_claim_is_503_before_the_server(
    tmp_path: Path, sse_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with local_stack(released(tmp_path, sse_upstream), sweep_every=None) as stack:
        session, pings = await open_session(stack), sse_upstream.pings()

        async def down(*args: object, **kwargs: object) -> None:
            raise LedgerUnavailable("store down (test)")

        monkeypatch.setattr(stack.app[MCP_SESSIONS], "holds_claiming", down)
        for message in (PING_TOOL, PING):
            status, body = await post_read(stack, message, session)
            assert status == 503
            assert body["id"] == message["id"]
            assert "ledger is unreachable" in body["error"]["message"]
        assert sse_upstream.pings() == pings
        assert await emails(stack) == (0, 0)


async def test_an_id_not_freed_for_the_store_is_left_to_expire(
    tmp_path: Path, sse_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with local_stack(released(tmp_path, sse_upstream), sweep_every=None) as stack:
        session, pings = await open_session(stack), sse_upstream.pings()

        async def down(*args: object, **kwargs: object) -> None:
            raise LedgerUnavailable("store down (test)")

        monkeypatch.setattr(stack.app[MCP_SESSIONS], "free", down)
        assert (await post(stack, PING_TOOL, session))[0] == 200  # answered all the same
        assert sse_upstream.pings() == pings + 1
        assert (await post(stack, PING_TOOL, session))[0] == 409  # claimed until it expires


async def post_text(stack: Stack, body: object, headers: dict[str, str]) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(stack.url + "/mcp/crm", data=orjson.dumps(body), headers=headers) as answer,
    ):
        return answer.status, (await answer.read()).decode()


def slow_call(seconds: float) -> dict[str, object]:
    params = {"name": "slow", "arguments": {"seconds": seconds}}
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}


async def test_an_id_whose_call_timed_out_stays_claimed_while_the_server_may_run_it(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    """The proxy gave up on id 7 (timeout_seconds 4) but the server still runs it: a request
    reusing 7 would take over its late answer, so 7 stays claimed (to its TTL)."""
    async with local_stack(released(tmp_path, sse_upstream), sweep_every=None) as stack:
        session = await open_session(stack)
        status, _ = await post_text(stack, slow_call(6), session)  # timeout_seconds is 4
        assert "no answer within" in _ or status == 504, (status, _)
        done = sse_upstream.slow_done()
        started = time.monotonic()
        status, body = await post_text(stack, slow_call(3.5), session)
        took = time.monotonic() - started
        early = sse_upstream.slow_done()
        await asyncio.sleep(2.5)
    assert status == 409 or took >= 3.4, (
        f"id 7 reused after the timeout answered {status} after {took:.1f}s (its own call "
        f"sleeps 3.5s; slow calls finished when it answered: {early - done}): {body}"
    )


async def test_a_full_claims_table_is_503_before_the_server(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    async with local_stack(released(tmp_path, sse_upstream), sweep_every=None) as stack:
        session, pings = await open_session(stack), sse_upstream.pings()
        stack.app[MCP_SESSIONS]._claims_max = 0  # memory://: no room for one more claim
        for message in (PING_TOOL, PING):
            status, body = await post_read(stack, message, session)
            assert status == 503
            assert body["id"] == message["id"]
            assert "request ids in flight" in body["error"]["message"]
        assert sse_upstream.pings() == pings
        assert await emails(stack) == (0, 0)
