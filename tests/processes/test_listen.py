"""The listener's own limits, on `cycles-proxy serve` itself: a connection must finish its
request headers within `timeouts.read_request`, and a listener holds at most
`--max-connections` connections; beyond, a new one is told 503 at once, and clients are served
again as soon as a place is free (issue 14, item 8)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import openai
import orjson
import pytest
from listen_support import Pinger, address, call_and_leave, read_answer
from support import chat, chat_prompt_tokens, eventually, line, mini_cost, policy, proxy_in_front_of

from proxy.core.types import ReservationSettings
from proxy.store.ledger.base import BalanceRow, Ledger
from proxy.store.open import open_store
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream

HEADER_LIMIT = 2.0
"""timeouts.read_request in these tests' policy, in seconds."""
PARTIAL = b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nX-Cycles-Tenant: alpha\r\n"


def policy_file(tmp_path: Path) -> Path:
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    path = tmp_path / "policy.yaml"
    path.write_text(path.read_text() + f"timeouts:\n  read_request: {HEADER_LIMIT}\n")
    return path


class Trickler:
    """A client that sends a request's first lines, then one more header line every 0.2 s and
    never the blank line that ends them: it would hold its connection for ever."""

    def __init__(self, url: str) -> None:
        self.host, self.port = url.removeprefix("http://").split(":")
        self.connected = False
        self.closed_after: float | None = None
        self.answer = b""

    async def run(self, lasting: float = 30.0) -> None:
        reader, writer = await asyncio.open_connection(self.host, int(self.port))
        opened = time.monotonic()
        writer.write(PARTIAL)
        self.connected = True
        reading = asyncio.ensure_future(reader.read())
        try:
            for i in range(int(lasting / 0.2)):
                done, _ = await asyncio.wait([reading], timeout=0.2)
                if done:
                    break
                writer.write(f"X-Slow-{i}: a\r\n".encode())
            self.answer = await asyncio.wait_for(reading, 1)
            self.closed_after = time.monotonic() - opened
        except (ConnectionError, TimeoutError):
            self.closed_after = time.monotonic() - opened
        finally:
            reading.cancel()
            writer.close()


async def raw_get(url: str, path: str = "/healthz") -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n".encode())
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.timeout(90)
async def test_a_connection_trickling_its_headers_is_closed_after_read_request(
    tmp_path: Path, redis_url: str
) -> None:
    """`read_request` bounded only the body: 50 connections trickling their headers stayed open
    for ever. Each is closed once the limit has passed, unanswered."""
    async with proxy_in_front_of(FakeUpstream(), policy_file(tmp_path), redis_url) as (url, _):
        slow = [Trickler(url) for _ in range(5)]
        await asyncio.gather(*(t.run() for t in slow))
    for trickler in slow:
        assert trickler.closed_after is not None
        assert HEADER_LIMIT - 0.5 <= trickler.closed_after <= HEADER_LIMIT + 5, (
            trickler.closed_after
        )
        assert trickler.answer == b""


@pytest.mark.timeout(90)
async def test_connections_past_the_bound_are_refused_and_clients_are_served_again(
    tmp_path: Path, redis_url: str
) -> None:
    """With --max-connections 4, four tricklers hold every place: a fifth connection is
    answered 503 `too_many_connections` at once (not left waiting), and once the tricklers are
    cut at the header limit, the openai SDK's call is served and charged as usual."""
    fake = FakeUpstream()
    bound = ("--max-connections", "4")
    async with proxy_in_front_of(fake, policy_file(tmp_path), redis_url, 0, *bound) as (url, _):
        slow = [Trickler(url) for _ in range(4)]
        trickling = [asyncio.ensure_future(t.run()) for t in slow]
        await eventually(lambda: all(t.connected for t in slow), "the tricklers connecting")
        started = time.monotonic()
        refused = await raw_get(url)
        assert time.monotonic() - started < 1.5
        head, _, body = refused.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), refused
        assert b"Retry-After: 1" in head
        assert orjson.loads(body)["error"]["code"] == "too_many_connections"
        await eventually(lambda: all(t.done() for t in trickling), "the tricklers being cut")
        sdk = openai.AsyncOpenAI(
            base_url=url + "/v1", api_key="unused", default_headers={"X-Cycles-Tenant": "alpha"}
        )
        async with sdk:
            answer = await sdk.chat.completions.create(**chat(max_tokens=10))
        assert answer.choices[0].message.content
    stores = open_store(redis_url, ReservationSettings())
    ledger = stores.ledger
    try:
        row = await line(ledger, "alpha", "tenant")
    finally:
        await stores.close()
    assert (row.spent, row.reserved) == (mini_cost(chat_prompt_tokens(chat()), 10), 0)
    assert fake.calls == 1


@pytest.mark.timeout(90)
async def test_idle_keep_alive_connections_give_their_place_to_a_new_client(
    tmp_path: Path, redis_url: str
) -> None:
    """Four keep-alive clients pinging /healthz just often enough held every place for ever,
    one unauthenticated client enough to shut everyone out. At the bound, the connection idle
    longest is closed for the new one: the openai SDK's call is served at once (no 503, no
    retry) and charged."""
    fake = FakeUpstream()
    bound = ("--max-connections", "4", "--keep-alive-timeout", "60")
    async with proxy_in_front_of(fake, policy_file(tmp_path), redis_url, 0, *bound) as (url, _):
        pingers = [Pinger(url, every=0.3) for _ in range(4)]
        pinging = [asyncio.ensure_future(p.run()) for p in pingers]
        await eventually(lambda: all(p.answers >= 2 for p in pingers), "every pinger answered")
        sdk = openai.AsyncOpenAI(
            base_url=url + "/v1",
            api_key="unused",
            default_headers={"X-Cycles-Tenant": "alpha"},
            max_retries=0,
        )
        async with sdk:
            answer = await sdk.chat.completions.create(**chat(max_tokens=10))
        assert answer.choices[0].message.content
        assert sum(p.closed_after is not None for p in pingers) >= 1
        for p in pingers:
            p.stop.set()
        await asyncio.gather(*pinging)
    stores = open_store(redis_url, ReservationSettings())
    ledger = stores.ledger
    try:
        row = await line(ledger, "alpha", "tenant")
    finally:
        await stores.close()
    assert (row.spent, row.reserved) == (mini_cost(chat_prompt_tokens(chat()), 10), 0)


@pytest.mark.timeout(60)
async def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    tmp_path: Path, redis_url: str
) -> None:
    """After its answer, a keep-alive connection that sends nothing more is closed after
    --keep-alive-timeout, well before read_request (which bounds a request's headers)."""
    bound = ("--keep-alive-timeout", "0.3")
    async with proxy_in_front_of(FakeUpstream(), policy_file(tmp_path), redis_url, 0, *bound) as (
        url,
        _,
    ):
        pinger = Pinger(url, every=HEADER_LIMIT * 3)
        await pinger.run()
    assert pinger.answers == 1
    assert pinger.closed_after is not None and 0.2 <= pinger.closed_after < HEADER_LIMIT


@pytest.mark.timeout(90)
@pytest.mark.parametrize("peer", ["gateway client", "trusted proxy", "sidecar app"])
async def test_one_address_holds_at_most_its_share_of_connections(
    tmp_path: Path, redis_url: str, peer: str
) -> None:
    """In a gateway, with --max-connections-per-peer 3, a fourth connection from one address is
    told 429 `too_many_connections_from_peer` at once, and served again once one of its three
    closes. A trusted proxy's connections carry many clients, and a sidecar's one client is
    the app in its pod: only --max-connections bounds them."""
    path = policy_file(tmp_path)
    if peer != "sidecar app":
        path.write_text(path.read_text().replace("identity: header", "identity: api_key"))
    if peer == "trusted proxy":
        path.write_text(path.read_text() + 'trusted_proxies: ["127.0.0.1/32"]\n')
    counted = peer == "gateway client"
    bound = ("--max-connections-per-peer", "3")
    async with proxy_in_front_of(FakeUpstream(), path, redis_url, 0, *bound) as (url, _):
        held = [await asyncio.open_connection(*address(url)) for _ in range(3)]
        for reader, writer in held:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n")
            assert (await read_answer(reader)).startswith(b"HTTP/1.1 200")
        fourth = await raw_get(url)
        if not counted:
            assert fourth.startswith(b"HTTP/1.1 200"), fourth
        else:
            head, _, body = fourth.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 429"), fourth
            assert orjson.loads(body)["error"]["code"] == "too_many_connections_from_peer"
            held[0][1].close()

            async def served() -> bool:
                return (await raw_get(url)).startswith(b"HTTP/1.1 200")

            await eventually(served, "a connection served after one of the three closed")
        for _, writer in held:
            writer.close()


@pytest.mark.timeout(90)
async def test_calls_whose_clients_left_still_hold_their_place_until_they_end(
    tmp_path: Path, redis_url: str
) -> None:
    """A client that sends a call and closes at once gave its place back while the call ran
    on: 30 such clients had 30 calls in flight under --max-connections 4. A place is now held
    until the call's handler ends: at most 4 reach the provider at once, the others are told
    503, and every call that went up is settled, charged what the provider billed."""
    fake = FakeUpstream(FakeSettings(latency=1.0))
    bound = ("--max-connections", "4")
    body = chat(max_tokens=5)
    async with proxy_in_front_of(fake, policy_file(tmp_path), redis_url, 0, *bound) as (url, _):
        answers = [await call_and_leave(url, body, fake) for _ in range(12)]
        await eventually(lambda: fake.in_flight == 0 and fake.calls >= 4, "the calls ending")
        stores = open_store(redis_url, ReservationSettings())
        ledger = stores.ledger
        try:
            row = await eventually(lambda: _settled_line(ledger), "every call that went up settled")
        finally:
            await stores.close()
    assert fake.peak_in_flight <= 4, fake.peak_in_flight
    assert sum(a.startswith(b"HTTP/1.1 503") for a in answers) >= 12 - fake.calls
    assert row.spent == fake.calls * mini_cost(chat_prompt_tokens(body), 5)


async def _settled_line(ledger: Ledger) -> BalanceRow | None:
    row = await line(ledger, "alpha", "tenant")
    return row if row.reserved == 0 and row.spent > 0 else None
