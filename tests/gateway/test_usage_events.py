"""Usage events: the outbox written in the settling step (once per settle, never on a repeat,
an expiry's from what the record holds), its bound, the sender's delivery to the webhook, jsonl
and openmeter sinks (retried until taken, acknowledged after), and the policy's checks."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.exceptions
from aiohttp import web
from alerts_support import SECRET, verify
from conftest import EVERY_STORE
from hooks_support import sweep_tenant
from support import POLICY, chat, eventually
from usage_events_support import ledger_on

from proxy.core.errors import PolicyError
from proxy.core.types import ReservationSettings
from proxy.gateway import usage_sender
from proxy.gateway.spill import Spill
from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.store.ledger.base import BudgetLine, Candidate, Ledger, ReserveRequest
from proxy.store.ledger.memory import MemoryLedger
from proxy.store.redis.layout import OUTBOX_TENANTS
from proxy.testing.local import local_stack, serving

SCOPE = {"X-Cycles-Tenant": "alpha", "X-Cycles-Workflow": "w", "X-Cycles-Run": "r1"}
LINE = BudgetLine("tenant", "acme", "USD", "month", 10**9)
CALL = '{"request_id":"q1","model":"m","lines":["tenant|acme|USD|m1"]}'


def request(rid: str, ttl_ms: int | None = None) -> ReserveRequest:
    return ReserveRequest("acme", rid, [LINE], [Candidate({"USD": 500})], ttl_ms=ttl_ms)


# --- the outbox in the store ------------------------------------------------------------------


@EVERY_STORE
async def test_a_settle_adds_one_outbox_entry_and_its_repeat_none(store_url: str) -> None:
    async with ledger_on(store_url) as ledger:
        held = (await ledger.reserve(request("r1"))).reservation
        released = (await ledger.reserve(request("r2"))).reservation
        assert held is not None and released is not None
        for _ in range(2):
            await ledger.commit(held, {"USD": 321}, event=CALL)
            await ledger.release(released, event=CALL)
        entries = await ledger.outbox_read(10)
        assert [(e.tenant, e.fields["reservation"], e.fields["charged"]) for e in entries] == [
            ("acme", "r1", "USD=321"),
            ("acme", "r2", "-"),
        ]
        assert entries[0].fields["kind"] == "settle" and entries[0].fields["event"] == CALL
        assert await ledger.outbox_pending() == 2
        await ledger.outbox_ack(entries)
        assert await ledger.outbox_read(10) == [] and await ledger.outbox_pending() == 0


@EVERY_STORE
async def test_a_settle_without_an_event_writes_no_outbox_entry(store_url: str) -> None:
    async with ledger_on(store_url) as ledger:
        held = (await ledger.reserve(request("r1"))).reservation
        assert held is not None
        await ledger.commit(held, {"USD": 321})
        assert await ledger.outbox_read(10, rescan=True) == []


async def test_an_expiry_adds_an_entry_from_its_record_when_events_are_on(store_url: str) -> None:
    async with ledger_on(store_url) as ledger:
        ledger.usage_events = True
        await ledger.reserve(request("late", ttl_ms=0))
        await ledger.reserve(request("later", ttl_ms=10**6))
        assert await sweep_tenant(ledger, "acme") == 1
        [entry] = await ledger.outbox_read(10)
        assert entry.fields["kind"] == "expire" and entry.fields["reservation"] == "late"
        assert entry.fields["charged"] == "USD=500"
        assert entry.fields["fields"].startswith("tenant|acme|USD|m")
        ledger.usage_events = False
        await ledger.outbox_ack([entry])
        await ledger.reserve(request("quiet", ttl_ms=0))
        assert await sweep_tenant(ledger, "acme") == 1
        assert await ledger.outbox_read(10, rescan=True) == []


async def test_a_tenant_whose_index_write_was_lost_is_found_by_a_rescan(redis_url: str) -> None:
    async with ledger_on(redis_url) as ledger:
        held = (await ledger.reserve(request("r1"))).reservation
        assert held is not None
        await ledger.commit(held, {"USD": 5}, event=CALL)
        client = ledger._client  # type: ignore[attr-defined]
        await client.delete(OUTBOX_TENANTS)  # as if the proxy died right after the script
        assert await ledger.outbox_read(10) == []
        [entry] = await ledger.outbox_read(10, rescan=True)
        assert entry.fields["reservation"] == "r1"
        assert await client.sismember(OUTBOX_TENANTS, "acme")


async def test_one_sender_holds_the_outbox_until_its_claim_lapses(redis_url: str) -> None:
    async with ledger_on(redis_url) as ledger:
        assert await ledger.outbox_claim("one", 300)
        assert not await ledger.outbox_claim("two", 300)
        assert await ledger.outbox_claim("one", 300)  # renewed by its holder
        await eventually(lambda: ledger.outbox_claim("two", 300), "the claim lapsing", 5)
        assert not await ledger.outbox_claim("one", 300)


async def test_a_settle_whose_index_write_fails_is_done_and_its_event_kept(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ledger_on(redis_url) as ledger:
        held = (await ledger.reserve(request("r1"))).reservation
        assert held is not None

        async def unreachable(tenant: str) -> None:
            raise redis.exceptions.ConnectionError("the connection dropped")

        monkeypatch.setattr(ledger, "outbox_noted", unreachable)
        result = await ledger.commit(held, {"USD": 5}, event=CALL)
        assert (result.state, result.first) == ("COMMITTED", True)
        monkeypatch.undo()
        [entry] = await ledger.outbox_read(10, rescan=True)
        assert entry.fields["reservation"] == "r1"


async def test_the_memory_outbox_drops_its_oldest_entry_above_its_bound() -> None:
    ledger = MemoryLedger(ReservationSettings())
    ledger.outbox_bound = 2
    for rid in ("r1", "r2", "r3"):
        held = (await ledger.reserve(request(rid))).reservation
        assert held is not None
        await ledger.commit(held, {"USD": 1}, event=CALL)
    assert [e.fields["reservation"] for e in await ledger.outbox_read(10)] == ["r2", "r3"]
    assert await ledger.outbox_dropped() == 1


async def test_a_spilled_charge_is_written_with_its_event(store_url: str) -> None:
    """A call forwarded while the ledger was down (fail_mode: open) is charged once it answers,
    and its event goes with the charge, under the lines it was finally reserved on."""
    async with ledger_on(store_url) as ledger:
        spill = Spill()
        spill.add(request("spilled"), {"USD": 70}, CALL.replace('"tenant|acme|USD|m1"', ""))
        assert await spill.drain(ledger) == 1
        [entry] = await ledger.outbox_read(10)
        assert (entry.fields["reservation"], entry.fields["charged"]) == ("spilled", "USD=70")
        [prefix] = orjson.loads(entry.fields["event"])["lines"]
        assert prefix.startswith("tenant|acme|USD|m")


# --- delivery through the proxy ---------------------------------------------------------------


@dataclass
class Receiver:
    """A sink's endpoint: answers `statuses` in turn (then 200), keeps the batches it took."""

    statuses: list[int] = field(default_factory=list)
    batches: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    refused: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.statuses.pop(0) if self.statuses else 200
        if status != 200:
            self.refused += 1
            return web.Response(status=status)
        self.batches.append((dict(request.headers), body))
        return web.Response(status=200)

    def events(self) -> list[dict[str, Any]]:
        return [e for _, body in self.batches for e in orjson.loads(body)]


@asynccontextmanager
async def receiving(statuses: list[int] | None = None) -> AsyncIterator[tuple[Receiver, str]]:
    sink = Receiver(list(statuses or []))
    app = web.Application()
    app.router.add_post("/hook", sink.handle)
    app.router.add_post("/api/v1/events", sink.handle)
    async with serving(app) as url:
        yield sink, url


def events_policy(tmp_path: Path, events: str, plan: str = "") -> Policy:
    text = POLICY.format(
        mode="enforce",
        budgets="      tenant: {limit: 100, period: month, unit: USD}",
        extra=plan,
    )
    path = tmp_path / "policy.yaml"
    path.write_text(text + events)
    return load_policy(path)


@pytest.fixture(autouse=True)
def fast_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYCLES_EVENTS_SECRET", SECRET)
    monkeypatch.setenv("OPENMETER_TOKEN", "om-token")
    monkeypatch.setattr(usage_sender, "RETRY_S", 0.01)
    monkeypatch.setattr(usage_sender, "POLL_S", 0.01)
    monkeypatch.setattr(usage_sender, "GAUGE_S", 0.0)


async def calls(url: str, n: int) -> list[str]:
    """`n` chat calls; their request ids."""
    ids = []
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            headers = SCOPE | {"X-Request-Id": f"req-{i}"}
            async with session.post(
                f"{url}/v1/chat/completions", json=chat("hi", 20), headers=headers
            ) as answer:
                assert answer.status == 200, await answer.text()
                ids.append(answer.headers["X-Request-Id"])
    return ids


def usd_units(events: list[dict[str, Any]]) -> int:
    return sum(c["units"] for e in events for c in e["data"]["cost"] if c["unit"] == "USD")


async def spent(ledger: Ledger) -> int:
    rows = await ledger.balances("alpha")
    return sum(row.spent for row in rows if row.level == "tenant" and row.unit == "USD")


async def test_each_call_is_one_signed_cloudevent_whose_costs_sum_to_spent(
    tmp_path: Path, store_url: str
) -> None:
    async with receiving() as (sink, url):
        hook = f"{{type: webhook, url: '{url}/hook', secret_env: CYCLES_EVENTS_SECRET}}"
        hook = f"  sinks:\n    - {hook}\n"
        policy = events_policy(tmp_path, "events:\n  source: test-proxy\n" + hook)
        async with local_stack(policy, store=store_url, sweep_every=None) as stack:
            request_ids = await calls(stack.url, 5)
            await eventually(lambda: len(sink.events()) == 5, "five events delivered")
            events = sink.events()
            assert usd_units(events) == await spent(stack.ledger)
            await eventually(lambda: _empty(stack.ledger), "the outbox emptied after delivery")
    assert all(verify(headers, body) for headers, body in sink.batches)
    assert len({e["id"] for e in events}) == 5
    assert sorted(e["data"]["request_id"] for e in events) == sorted(request_ids)
    event = events[0]
    assert {k: event[k] for k in ("specversion", "type", "source", "subject")} == {
        "specversion": "1.0",
        "type": "io.cycles.usage.v1",
        "source": "test-proxy",
        "subject": "alpha",
    }
    data = event["data"]
    assert data["scope"]["tenant"] == "alpha" and data["period"].startswith("m")
    assert (data["model"], data["sent_model"], data["decision"]) == ("gpt-4o-mini",) * 2 + (
        "ALLOW",
    )
    assert data["tokens"]["prompt"] > 0 and data["tokens"]["completion"] > 0
    [usd] = [c for c in data["cost"] if c["unit"] == "USD"]
    assert usd["unit"] == "USD" and usd["amount"] == f"{usd['units'] / 10**8:.8f}"
    assert data["cost_usd"] == usd["amount"]


async def test_a_sink_that_refuses_gets_the_batch_again_and_nothing_is_lost(
    tmp_path: Path, store_url: str
) -> None:
    async with receiving([500, 503, 500]) as (sink, url):
        policy = events_policy(
            tmp_path, f"events:\n  sinks:\n    - {{type: webhook, url: '{url}/hook'}}\n"
        )
        async with local_stack(policy, store=store_url, sweep_every=None) as stack:
            await calls(stack.url, 3)
            await eventually(lambda: len(sink.events()) == 3, "three events delivered")
            await eventually(lambda: _empty(stack.ledger), "the outbox emptied after delivery")
    assert sink.refused == 3
    assert len({e["id"] for e in sink.events()}) == 3


async def _empty(ledger: Ledger) -> bool:
    return await ledger.outbox_pending() == 0


async def test_events_off_write_no_outbox_entry(tmp_path: Path, store_url: str) -> None:
    policy = events_policy(tmp_path, "")
    async with local_stack(policy, store=store_url, sweep_every=None) as stack:
        await calls(stack.url, 2)
        assert await stack.ledger.outbox_read(10, rescan=True) == []


async def test_jsonl_and_openmeter_sinks_each_get_every_event(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    async with receiving() as (sink, url):
        sinks = (
            f"    - {{type: jsonl, path: '{log}', max_bytes: 3000, keep: 2}}\n"
            f"    - {{type: openmeter, url: '{url}/', token_env: OPENMETER_TOKEN}}\n"
        )
        policy = events_policy(tmp_path, "events:\n  sinks:\n" + sinks)
        async with local_stack(policy, sweep_every=None) as stack:
            await calls(stack.url, 6)
            await eventually(lambda: len(sink.events()) == 6, "six events to openmeter")
    headers = sink.batches[0][0]
    assert headers["Content-Type"] == "application/cloudevents-batch+json"
    assert headers["Authorization"] == "Bearer om-token"
    written = [
        orjson.loads(line)
        for path in (tmp_path / "usage.jsonl.2", tmp_path / "usage.jsonl.1", log)
        if path.exists()
        for line in path.read_bytes().splitlines()
    ]
    assert (tmp_path / "usage.jsonl.1").exists(), "rotated past max_bytes"
    assert all(len(p.read_bytes()) <= 3000 for p in (log, tmp_path / "usage.jsonl.1"))
    assert sorted(e["id"] for e in written) == sorted(e["id"] for e in sink.events())


async def test_a_backed_up_outbox_shows_in_the_metric_and_alerts(
    tmp_path: Path, redis_url: str
) -> None:
    async with receiving([500] * 1000) as (sink, url), receiving() as (alerts, alerts_url):
        text = (
            f"events:\n  max_pending: 2\n  sinks:\n    - {{type: webhook, url: '{url}/hook'}}\n"
            f"alerts:\n  webhooks:\n    - {{url: '{alerts_url}/hook'}}\n"
        )
        policy = events_policy(tmp_path, text)
        async with local_stack(policy, store=redis_url, sweep_every=None) as stack:
            await calls(stack.url, 3)  # the third finds the tenant's outbox full: not written
            await eventually(lambda: _dropping(alerts.batches), "the events.backlog alert")
            assert "cycles_events_pending 2.0" in await metrics(stack.url)
            assert "cycles_events_dropped_total 1.0" in await metrics(stack.url)
    alert = orjson.loads(alerts.batches[-1][1])
    assert (alert["type"], alert["pending"], alert["max_pending"]) == ("events.backlog", 2, 2)
    assert (alert["dropping"], alert["dropped"]) == (True, 1)
    assert sink.events() == []


def _dropping(batches: list[tuple[dict[str, str], bytes]]) -> bool:
    return any(orjson.loads(body).get("dropping") for _, body in batches)


async def metrics(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as answer:
        return await answer.text()


async def test_an_action_reservation_settled_is_one_event(tmp_path: Path, store_url: str) -> None:
    async with receiving() as (sink, url):
        text = "actions:\n  send_email: {RISK_POINTS: 50}\n"
        text += f"events:\n  sinks:\n    - {{type: webhook, url: '{url}/hook'}}\n"
        risk = "    action_budgets:\n      tenant: {limit: 500, period: month}"
        policy = events_policy(tmp_path, text, risk)
        async with local_stack(policy, store=store_url, sweep_every=None) as stack:
            held = [await action(stack.url, "") for _ in range(2)]
            await action(stack.url, f"/{held[0]}/commit", {"amount": 30})
            await action(stack.url, f"/{held[1]}/release", {})
            await action(stack.url, f"/{held[0]}/commit", {"amount": 30})  # a repeat: no event
            await eventually(lambda: len(sink.events()) == 2, "two events delivered")
            await eventually(lambda: _empty(stack.ledger), "the outbox emptied")
    by_id = {e["id"]: e["data"] for e in sink.events()}
    assert by_id[held[0]]["outcome"] == "committed" and by_id[held[1]]["outcome"] == "released"
    assert by_id[held[0]]["cost"] == [{"unit": "RISK_POINTS", "units": 30, "amount": "30"}]
    assert by_id[held[0]]["endpoint"] == "reservations" and by_id[held[1]]["cost"] == []


async def action(url: str, path: str, body: dict[str, Any] | None = None) -> str:
    """POST to the reservations API; the reservation's id."""
    payload = {"action": "send_email"} if body is None else body
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/cycles/reservations{path}", json=payload, headers=SCOPE) as answer,
    ):
        assert answer.status in (200, 201), await answer.text()
        return str((await answer.json())["id"])


# --- the policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        (
            "{type: kafka}",
            "does not match any of the expected tags: 'webhook', 'jsonl', 'openmeter'",
        ),
        ("{type: openmeter, url: 'https://om.example'}", "token_env"),
        ("{type: webhook, url: 'ftp://x'}", "is not an http(s) URL"),
        ("{type: jsonl, path: x, max_bytes: 0}", "greater than 0"),
    ],
)
def test_a_bad_sink_is_refused_with_what_to_fix(tmp_path: Path, sink: str, message: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(message)):
        events_policy(tmp_path, f"events:\n  sinks:\n    - {sink}\n")
