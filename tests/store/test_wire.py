"""The ledger's pipelined Redis connection (store/redis/wire.py) against a real redis-server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import hiredis
import pytest
import redis.asyncio as redis
from support import RedisProc, eventually

from proxy.store.redis.wire import ReplyError, Wire, head, pack, pack_after


def test_pack_is_resp_with_byte_lengths() -> None:
    assert pack(("SET", "k", "")) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
    assert pack(("ECHO", "é")) == b"*2\r\n$4\r\nECHO\r\n$2\r\n\xc3\xa9\r\n"


def test_a_head_packed_once_then_the_rest_is_the_whole_command_packed() -> None:
    first = ("EVALSHA", "a" * 40, "2", "cy:{é}:k", "", "x\r\ny")
    rest = ("12", "é" * 5, "", "r" * 300)
    assert pack_after(head(first), rest) == pack(first + rest)
    assert pack_after(head(first[:1]), ("1",) * 12) == pack(first[:1] + ("1",) * 12)


async def test_a_burst_of_concurrent_commands_gets_each_its_own_reply(redis_url: str) -> None:
    wire = Wire(redis_url)
    try:
        replies = await asyncio.gather(*(wire.call("INCRBY", "n", str(i)) for i in range(1000)))
        assert await wire.call("GET", "n") == str(sum(range(1000)))
        # INCRBY answers the running total: in order, each reply is the previous + its own i.
        assert replies == [sum(range(i + 1)) for i in range(1000)]
        assert await wire.call("ECHO", "é") == "é"
        assert await wire.call("HSET", "h", "a", "1", "b", "2") == 2
        assert await wire.call("HGETALL", "h") == ["a", "1", "b", "2"]
    finally:
        await wire.close()


async def test_error_replies_raise_and_leave_the_connection_usable(redis_url: str) -> None:
    wire = Wire(redis_url)
    try:
        with pytest.raises(ReplyError, match="NOSCRIPT"):
            await wire.call("EVALSHA", "0" * 40, "0")
        with pytest.raises(ReplyError, match="wrong number of arguments"):
            await wire.call("GET")
        assert await wire.call("PING") == "PONG"
    finally:
        await wire.close()


async def test_a_caller_that_gives_up_does_not_shift_the_replies(redis_url: str) -> None:
    wire = Wire(redis_url)
    observer = redis.Redis.from_url(redis_url)

    async def blocked() -> bool:
        return int((await observer.info("clients"))["blocked_clients"]) == 1

    try:
        slow = asyncio.ensure_future(wire.call("BLPOP", "nothing", "1"))
        after = asyncio.ensure_future(wire.call("ECHO", "mine"))
        await eventually(blocked, "Redis blocking on the BLPOP")
        slow.cancel()
        assert await after == "mine"
        assert await wire.call("ECHO", "next") == "next"
    finally:
        await wire.close()
        await observer.aclose()


async def test_a_silent_server_times_out_every_waiting_command() -> None:
    """A server that accepts and never answers: every command waiting fails after the timeout,
    and the next one opens a new connection."""
    connections: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    wire = Wire(f"redis://127.0.0.1:{port}/0", timeout=0.3)
    try:
        calls = [asyncio.ensure_future(wire.call("PING")) for _ in range(4)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, TimeoutError) for r in results), results
        with pytest.raises(TimeoutError):
            await wire.call("PING")
        assert len(connections) == 2
    finally:
        await wire.close()
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_restarted_server_is_reconnected_to(tmp_path: Path) -> None:
    server = RedisProc(tmp_path / "redis", durable=False)
    server.start()
    wire = Wire(server.url)
    try:
        assert await wire.call("PING") == "PONG"
        server.kill()
        with pytest.raises(ConnectionError):
            await wire.call("PING")
        with pytest.raises(OSError):  # refused while it is down
            await wire.call("PING")
        server.start()
        assert await wire.call("PING") == "PONG"
    finally:
        await wire.close()
        server.kill()


async def test_password_and_database_from_the_url(tmp_path: Path) -> None:
    server = RedisProc(tmp_path / "redis", durable=False)
    server.start()
    admin = redis.Redis(port=server.port)
    try:
        await admin.config_set("requirepass", "s3cret")
        wire = Wire(f"redis://:s3cret@127.0.0.1:{server.port}/3")
        await wire.call("SET", "where", "three")
        await wire.close()
        check = redis.Redis(port=server.port, password="s3cret", db=3, decode_responses=True)
        assert await check.get("where") == "three"
        await check.aclose()
    finally:
        await admin.aclose()
        server.kill()


def test_it_runs_on_uvloop_as_the_server_does(redis_url: str) -> None:
    """uvloop's transports are not asyncio.Transport subclasses; `serve` runs on uvloop."""
    import uvloop

    async def burst() -> list[Any]:
        wire = Wire(redis_url)
        try:
            return await asyncio.gather(*(wire.call("ECHO", str(i)) for i in range(100)))
        finally:
            await wire.close()

    assert uvloop.run(burst()) == [str(i) for i in range(100)]


async def test_a_ledger_call_survives_a_lost_connection_to_a_server_without_its_scripts(
    tmp_path: Path,
) -> None:
    """Redis restarted empty: the call's connection is gone *and* the new server lacks the
    scripts. One call reconnects, reloads and succeeds (the CI failure this fixed: a 500)."""
    from proxy.core.types import ReservationSettings
    from proxy.store.ledger import RedisLedger
    from proxy.store.ledger.base import BudgetLine, Candidate, ReserveRequest

    server = RedisProc(tmp_path / "redis", durable=False)
    server.start()
    ledger = RedisLedger(server.url, ReservationSettings(), "web-1")
    line = BudgetLine("tenant", "acme", "USD", "month", 1000)
    try:
        assert (
            await ledger.reserve(ReserveRequest("acme", "a", [line], [Candidate({"USD": 1})]))
        ).allowed
        server.kill()
        server.start()
        again = await ledger.reserve(ReserveRequest("acme", "b", [line], [Candidate({"USD": 1})]))
        assert again.allowed
    finally:
        await ledger.close()
        server.kill()


async def test_closing_while_connecting_leaves_no_connection_open() -> None:
    """close() during a connect that has not finished: the caller gets ConnectionError and
    no socket outlives the Wire (pytest turns an unclosed one into an error)."""
    accepted = asyncio.Event()

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await asyncio.sleep(0.2)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    wire = Wire(f"redis://:pw@127.0.0.1:{port}/0")  # AUTH keeps the connect unfinished
    call = asyncio.ensure_future(wire.call("PING"))
    await accepted.wait()
    await wire.close()
    with pytest.raises(ConnectionError):
        await call
    with pytest.raises(ConnectionError):
        await wire.call("PING")
    server.close()
    await server.wait_closed()


async def test_callers_retrying_a_failed_connect_share_one_new_connection() -> None:
    """Many calls wait for one connect that fails (Redis restarting) and each tries once more,
    as the ledger does: the retries share one new connection, and closing the Wire leaves none
    open. (They used to open one each, and every one but the last stayed open, unclosed.)"""
    open_now: set[asyncio.StreamWriter] = set()
    accepted = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        if accepted == 1:  # the first connect fails: closed before AUTH is answered
            writer.close()
            return
        open_now.add(writer)
        commands = hiredis.Reader()
        try:
            while data := await reader.read(4096):
                commands.feed(data)
                while commands.gets() is not False:
                    writer.write(b"+OK\r\n")
        finally:
            open_now.discard(writer)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    wire = Wire(f"redis://:pw@127.0.0.1:{port}/0")

    async def call_with_one_retry() -> Any:
        try:
            return await wire.call("PING")
        except ConnectionError:
            return await wire.call("PING")

    try:
        replies = await asyncio.gather(*(call_with_one_retry() for _ in range(8)))
        assert replies == ["OK"] * 8
        assert (accepted, len(open_now)) == (2, 1)
    finally:
        await wire.close()
    await eventually(lambda: not open_now, "the server seeing the Wire's connection close")
    server.close()
    await server.wait_closed()
