"""Usage events never make the ledger fail (a bounded outbox), never log a sink's credentials,
and say what the settle was (a zero-cost commit is a commit)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import aiohttp
import pytest
from conftest import EVERY_STORE
from usage_events_support import ledger_on

from proxy.core.errors import LedgerError
from proxy.gateway import usage_sender
from proxy.gateway.logs import redact
from proxy.gateway.usage_events import cloud_event
from proxy.gateway.usage_sender import UsageSender
from proxy.policy.runtime import Policy, UsageEvents, WebhookSink
from proxy.store.ledger.base import BudgetLine, Candidate, ReserveRequest

LINE = BudgetLine("tenant", "acme", "USD", "month", 10**12)
CALL = '{"request_id":"q1","model":"m","lines":["tenant|acme|USD|m1"]}'


async def test_a_sink_outage_never_makes_the_ledger_refuse_settles(redis_url: str) -> None:
    """The sinks are down: a tenant's Redis outbox stops growing at `events.max_pending`, the
    events past it are dropped and counted, and the settles go on (unbounded, the outbox would
    fill the server and the settling scripts would be refused with OOM). maxmemory is set 4 MB
    above what the server uses; the events are ~1 KB (a long request id)."""
    async with ledger_on(redis_url) as ledger:
        ledger.outbox_bound = 200
        client = ledger._client  # type: ignore[attr-defined]
        old = (await client.config_get("maxmemory"))["maxmemory"]
        used = int((await client.info("memory"))["used_memory"])
        await client.config_set("maxmemory", used + 4 * 1024 * 1024)
        call = CALL.replace("q1", "q" * 1000)
        failed: Exception | None = None
        kept = dropped = 0
        try:
            for i in range(3000):
                req = ReserveRequest("acme", f"r{i}", [LINE], [Candidate({"USD": 5})])
                held = (await ledger.reserve(req)).reservation
                assert held is not None
                await ledger.commit(held, {"USD": 5}, event=call)
            kept, dropped = await ledger.outbox_pending(), await ledger.outbox_dropped()
        except LedgerError as exc:
            failed = exc
        finally:
            await client.config_set("maxmemory", old)
            await client.flushall()
        assert failed is None, f"settles refused because events were not delivered: {failed!r}"
        assert (kept, dropped) == (200, 2800)


async def test_a_webhook_urls_password_is_not_logged(
    redis_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sink URL with credentials (https://user:password@host/…, as basic-auth webhooks take
    them) is logged on every failed delivery ('not delivered to WebhookSink(url=…)'): the
    redaction filter hides the password of any URL."""
    monkeypatch.setattr(usage_sender, "RETRY_S", 0.01)
    async with ledger_on(redis_url) as ledger:
        req = ReserveRequest("acme", "r1", [LINE], [Candidate({"USD": 5})])
        held = (await ledger.reserve(req)).reservation
        assert held is not None
        await ledger.commit(held, {"USD": 5}, event=CALL)
        sink = WebhookSink("http://billing:hunter2-topsecret@127.0.0.1:9/usage")
        runtime = SimpleNamespace(policy=Policy(events=UsageEvents(sinks=(sink,))))
        sender = UsageSender(ledger, runtime)  # type: ignore[arg-type]
        caplog.set_level(logging.WARNING)
        async with aiohttp.ClientSession() as session:
            entries = await ledger.outbox_read(10)
            await sender._to(session, sink, [cloud_event(e, "s") for e in entries])
        logged = " ".join(redact(r.getMessage()) for r in caplog.records)
        assert "not delivered" in logged
        assert "hunter2-topsecret" not in logged, logged


@EVERY_STORE
async def test_a_zero_cost_commit_is_reported_committed(store_url: str) -> None:
    """A call committed with nothing to charge (a provider reporting no billable units) is
    `outcome: committed`, though its `charged` is '-' as a release's."""
    async with ledger_on(store_url) as ledger:
        req = ReserveRequest("acme", "r1", [LINE], [Candidate({"USD": 5})])
        held = (await ledger.reserve(req)).reservation
        assert held is not None
        result = await ledger.commit(held, {}, event=CALL)
        assert result.state == "COMMITTED"
        [entry] = await ledger.outbox_read(10)
        assert cloud_event(entry, "s")["data"]["outcome"] == "committed"
