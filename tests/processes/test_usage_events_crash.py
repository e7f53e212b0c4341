"""Usage events survive crashes: 1,000 calls through two `cycles-proxy serve` processes on one
Redis, the events' receiver restarted twice and one proxy killed with SIGKILL on the way, and
the receiver still sees every answered call exactly once (after deduplicating redeliveries by
event id), with the events' costs summing to what the ledger spent."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from support import chat, eventually, line, policy, proxy_process

from proxy.core import tasks
from proxy.core.types import ReservationSettings
from proxy.store.open import open_store
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.local import serving

CALLS = 1000
CONCURRENCY = 16


@dataclass
class Receiver:
    """A webhook sink on a fixed port that can be stopped and started again."""

    port: int
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    """By event id: redeliveries collapse."""
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        for event in orjson.loads(await request.read()):
            self.events[event["id"]] = event
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def restart(self) -> None:
        await self.stop()
        await asyncio.sleep(0.5)
        await self.start()

    def request_ids(self) -> list[str]:
        return [e["data"]["request_id"] for e in self.events.values() if e["data"]["request_id"]]

    def usd(self) -> int:
        costs = (c for e in self.events.values() for c in e["data"]["cost"])
        return sum(c["units"] for c in costs if c["unit"] == "USD")


@dataclass
class Load:
    """CALLS chat calls, CONCURRENCY at a time, spread over the proxies in `targets`."""

    targets: list[str]
    answered: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)

    def done(self) -> int:
        return len(self.answered) + len(self.failed)

    async def run(self) -> None:
        numbers = iter(range(CALLS))
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(self._worker(session, numbers) for _ in range(CONCURRENCY)))

    async def _worker(self, session: aiohttp.ClientSession, numbers: Any) -> None:
        for n in numbers:
            rid = f"call-{n}"
            url = self.targets[n % len(self.targets)]
            headers = {"X-Cycles-Tenant": "alpha", "X-Request-Id": rid}
            try:
                async with session.post(
                    url + "/v1/chat/completions", json=chat("hi", 20), headers=headers
                ) as answer:
                    await answer.read()
                    (self.answered if answer.status == 200 else self.failed).add(rid)
            except aiohttp.ClientError:
                self.failed.add(rid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver(free_port())
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


async def spent(redis_url: str) -> int:
    stores = open_store(redis_url, ReservationSettings())
    try:
        return (await line(stores.ledger, "alpha", "tenant")).spent
    finally:
        await stores.close()


async def test_every_answered_call_is_one_event_through_restarts_and_a_kill(
    tmp_path: Path, redis_url: str
) -> None:
    policy(tmp_path, "tenant: {limit: 1000, period: month}")
    path = tmp_path / "policy.yaml"
    fake = FakeUpstream()
    async with receiving() as receiver, serving(fake.app()) as fake_url:
        hook = f"http://127.0.0.1:{receiver.port}/hook"
        path.write_text(
            path.read_text() + f"events:\n  sinks:\n    - {{type: webhook, url: '{hook}'}}\n"
        )
        start = partial_process(path, redis_url, fake_url + "/v1", fake.settings.api_key)
        async with start() as (b, _):
            async with start() as (a, doomed):
                load = Load([a, b])
                running = tasks.spawn(load.run(), name="load")
                await eventually(lambda: load.done() >= 150, "150 calls", 60)
                await receiver.restart()
                await eventually(lambda: load.done() >= 350, "350 calls", 60)
                doomed.kill()
                load.targets.remove(a)
                await doomed.wait()
            async with start() as (again, _):
                load.targets.append(again)
                await eventually(lambda: load.done() >= 700, "700 calls", 60)
                await receiver.restart()
                await running
                ledger_spent = await eventually(
                    lambda: settled(receiver, load, redis_url), "every answered call's event", 40
                )
    assert len(load.answered) >= 800, f"only {len(load.answered)} calls were answered"
    assert load.failed, "the kill cut no call short: it did not happen under load"
    ids = receiver.request_ids()
    assert len(ids) == len(set(ids)), "a call reported under two event ids"
    assert set(ids) <= load.answered | load.failed
    assert receiver.usd() == ledger_spent


async def settled(receiver: Receiver, load: Load, redis_url: str) -> int | None:
    """The ledger's spent, once every answered call's event arrived and the costs add up to it."""
    if not load.answered <= set(receiver.request_ids()):
        return None
    total = await spent(redis_url)
    return total if receiver.usd() == total else None


def partial_process(path: Path, store: str, upstream: str, key: str) -> Any:
    return lambda: proxy_process(path, store, upstream, key)
