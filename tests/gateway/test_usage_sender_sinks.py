"""The usage sender acknowledges a batch only once every sink in force took it, and its
events keep their identity (source, id) when another process redelivers them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from conftest import EVERY_STORE
from usage_events_support import ledger_on

from proxy.core.tasks import spawn
from proxy.gateway import usage_sender
from proxy.gateway.usage_sender import UsageSender
from proxy.policy.runtime import Policy, UsageEvents, WebhookSink
from proxy.store.ledger.base import BudgetLine, Candidate, Ledger, ReserveRequest
from proxy.testing.local import serving

LINE = BudgetLine("tenant", "acme", "USD", "month", 10**9)
CALL = '{"request_id":"q1","model":"m","lines":["tenant|acme|USD|m1"]}'


async def one_commit(ledger: Ledger, rid: str = "r1") -> None:
    req = ReserveRequest("acme", rid, [LINE], [Candidate({"USD": 500})])
    held = (await ledger.reserve(req)).reservation
    assert held is not None
    await ledger.commit(held, {"USD": 321}, event=CALL)


def runtime_with(*sinks: Any) -> SimpleNamespace:
    return SimpleNamespace(policy=Policy(events=UsageEvents(sinks=tuple(sinks))))


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage_sender, "RETRY_S", 0.01)
    monkeypatch.setattr(usage_sender, "POLL_S", 0.01)


@EVERY_STORE
async def test_a_sink_fixed_by_a_reload_gets_the_batch_that_waited_for_it(store_url: str) -> None:
    """The webhook is down (its URL is wrong); the operator fixes the URL and reloads. The batch
    that was waiting goes to the new sink (a sink is known by its settings) before it is
    acknowledged: never deleted without every sink in force having taken it."""
    got: list[dict[str, Any]] = []

    async def good(request: web.Request) -> web.Response:
        got.extend(orjson.loads(await request.read()))
        return web.Response(status=200)

    async def bad(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_post("/good", good)
    app.router.add_post("/wrong", bad)
    async with serving(app) as url, ledger_on(store_url) as ledger:
        runtime = runtime_with(WebhookSink(f"{url}/wrong"))
        sender = UsageSender(ledger, runtime)  # type: ignore[arg-type]
        await one_commit(ledger)
        async with aiohttp.ClientSession() as session:
            rounds = spawn(sender.round(session), name="round")
            await asyncio.sleep(0.3)  # the batch waits on the failing sink
            runtime.policy = Policy(events=UsageEvents(sinks=(WebhookSink(f"{url}/good"),)))
            await asyncio.wait_for(rounds, 5)
            for _ in range(20):
                await sender.round(session)
        assert [e["id"] for e in got] == ["r1"], "the waiting batch was acked, never delivered"


@EVERY_STORE
async def test_a_redirected_post_is_not_a_delivery(store_url: str) -> None:
    """A webhook behind a redirect (a 302/301 from a load balancer, http -> https, a moved
    path): aiohttp would follow it as a GET without the body, and a 200 there is no delivery.
    A 3xx is a failure, retried: the batch waits in the outbox."""
    got: list[dict[str, Any]] = []

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/landing")

    async def landing_get(request: web.Request) -> web.Response:
        return web.Response(status=200, text="ok")

    async def landing_post(request: web.Request) -> web.Response:
        got.extend(orjson.loads(await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", moved)
    app.router.add_get("/landing", landing_get)
    app.router.add_post("/landing", landing_post)
    async with serving(app) as url, ledger_on(store_url) as ledger:
        sender = UsageSender(ledger, runtime_with(WebhookSink(f"{url}/hook")))  # type: ignore[arg-type]
        await one_commit(ledger)
        async with aiohttp.ClientSession() as session:
            rounds = spawn(sender.round(session), name="round")
            await asyncio.sleep(0.3)  # a 3xx is retried: the batch waits
            assert not rounds.done()
            rounds.cancel()
        assert got == []
        assert await ledger.outbox_pending() == 1, "acknowledged after a redirect"


async def test_a_redelivery_by_another_process_keeps_the_events_source(redis_url: str) -> None:
    """A batch delivered by a process that died before acknowledging it is redelivered by the
    next sender (a restart, or a replica taking over the claim) under the *same* source: the
    CloudEvents identity is (source, id), OpenMeter deduplicates on exactly that, and a source
    naming the process would have the redelivery counted twice."""
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.extend(orjson.loads(await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serving(app) as url, ledger_on(redis_url) as first, ledger_on(redis_url) as second:
        await one_commit(first)
        sinks = (WebhookSink(f"{url}/hook"),)
        a = UsageSender(first, runtime_with(*sinks))  # type: ignore[arg-type]
        async with aiohttp.ClientSession() as session:
            assert await first.outbox_claim(a.owner, 100)
            entries = await first.outbox_read(10)
            await a.deliver(session, entries)  # taken by the sink; the process dies: no ack
            await first._client.delete("cy:v1:outbox_sender")  # type: ignore[attr-defined]  # its claim lapses
            b = UsageSender(second, runtime_with(*sinks))  # type: ignore[arg-type]
            assert await b.round(session)
        assert [e["id"] for e in got] == ["r1", "r1"]
        assert len({(e["source"], e["id"]) for e in got}) == 1, [e["source"] for e in got]


@EVERY_STORE
async def test_a_reload_that_removes_every_sink_keeps_the_waiting_batch(store_url: str) -> None:
    """The batch waits on a failing sink; a reload turns events off (no sink): no sink took
    the batch, so it is not acknowledged: it waits in the outbox for a sink."""

    async def bad(request: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/down", bad)
    async with serving(app) as url, ledger_on(store_url) as ledger:
        runtime = runtime_with(WebhookSink(f"{url}/down"))
        sender = UsageSender(ledger, runtime)  # type: ignore[arg-type]
        await one_commit(ledger)
        async with aiohttp.ClientSession() as session:
            rounds = spawn(sender.round(session), name="round")
            await asyncio.sleep(0.3)  # the batch waits on the failing sink
            runtime.policy = Policy(events=UsageEvents(sinks=()))
            assert await asyncio.wait_for(rounds, 5)
            assert not await sender.round(session)
        assert [e.fields["reservation"] for e in await ledger.outbox_read(10)] == ["r1"]
