"""Budgets for actions (RISK_POINTS): the reservation API on the proxy port, its ledger state on
every store, and the client's context manager."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import aiohttp
import orjson
import pytest
from conftest import EVERY_STORE
from hooks_support import set_clock_offset
from support import chat

from proxy.client import BudgetDenied, Cycles, CyclesAPIError
from proxy.core.errors import PolicyError
from proxy.core.tasks import spawn
from proxy.core.types import ReservationSettings
from proxy.gateway.context import API_KEYS, RUNTIME
from proxy.policy import load_policy
from proxy.policy.describe import describe
from proxy.policy.runtime import Policy
from proxy.store.ledger import MemoryLedger, RedisLedger
from proxy.store.ledger.base import BudgetLine, Candidate, ReservationRecord, ReserveRequest
from proxy.store.ledger.common import wall_clock_ms
from proxy.store.open import open_store
from proxy.store.tenants import TenantStore
from proxy.testing.local import Stack, local_stack

POLICY = """
identity: header
upstreams:
  openai: {{base_url: "https://api.openai.com/v1"}}
routes:
  - {{model: "*", upstream: openai}}
models:
  gpt-4o-mini: {{input: 0.15, output: 0.60}}
actions:
  send_email: {{RISK_POINTS: 50}}
  issue_refund: {{RISK_POINTS: 200}}
plans:
  ops:
    default_max_tokens: 100
    budgets:
      tenant: {{limit: 5, period: month}}
    action_budgets:
      tenant: {{limit: 500, period: month}}
      agent: {{limit: 200, period: month}}
  calls_only:
    budgets:
      tenant: {{limit: 5, period: month}}
tenants:
  acme: {{plan: ops}}
  beta: {{plan: ops}}
  shady: {{plan: ops, mode: shadow}}
  plain: {{plan: calls_only}}
reservations: {{on_expiry: {on_expiry}}}
alerts: {{thresholds: ["50%"]}}
"""
RESERVATIONS = "/v1/cycles/reservations"
RISK = "RISK_POINTS"


def make_policy(tmp_path: Path, on_expiry: str = "charge") -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(on_expiry=on_expiry))
    return load_policy(path)


@asynccontextmanager
async def proxy(tmp_path: Path, store_url: str, **kwargs: Any) -> AsyncIterator[Stack]:
    async with local_stack(make_policy(tmp_path, **kwargs), store=store_url, sweep_every=None) as s:
        yield s


def store(stack: Stack) -> TenantStore:
    return stack.stores.tenants


def scope(tenant: str = "acme", **levels: str) -> dict[str, str]:
    named = {f"X-Cycles-{level.capitalize()}": value for level, value in levels.items()}
    return {"X-Cycles-Tenant": tenant, **named}


async def call(
    stack: Stack,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else (None if body is None else orjson.dumps(body))
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, stack.url + path, data=data, headers=headers or scope()) as answer,
    ):
        return answer.status, dict(answer.headers), orjson.loads(await answer.read())


async def reserve(stack: Stack, body: Any, headers: dict[str, str] | None = None) -> Any:
    status, _, answer = await call(stack, "POST", RESERVATIONS, body, headers)
    assert status == 201, answer
    return answer


async def settle(
    stack: Stack, rid: str, how: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    status, _, answer = await call(stack, "POST", f"{RESERVATIONS}/{rid}/{how}", body, headers)
    return status, answer


async def book(stack: Stack, tenant: str = "acme", unit: str = RISK) -> dict[str, tuple[int, int]]:
    """`<level>|<value>` → (spent, reserved) of the tenant's lines in `unit`."""
    return {
        f"{r.level}|{r.value}": (r.spent, r.reserved)
        for r in await stack.ledger.balances(tenant)
        if r.unit == unit
    }


# --- reserve, commit, release ----------------------------------------------------------------


async def test_exactly_ten_of_30_concurrent_emails_are_granted(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        results = await asyncio.gather(
            *(call(stack, "POST", RESERVATIONS, {"action": "send_email"}) for _ in range(30))
        )
        granted = [answer for status, _, answer in results if status == 201]
        denied = [(headers, answer) for status, headers, answer in results if status == 402]
        assert (len(granted), len(denied)) == (10, 20)
        assert await book(stack) == {"tenant|acme": (0, 500)}
        headers, error = denied[0]
        assert error["error"]["type"] == "budget_exceeded"
        assert "0 RISK_POINTS remaining of 500 RISK_POINTS" in error["error"]["message"]
        assert headers["X-Cycles-Remaining"] == "0 RISK_POINTS"
        assert headers["x-should-retry"] == "false"
        assert {g["status"] for g in granted} == {"ALLOW"}
        assert len({g["id"] for g in granted}) == 10
        assert sorted(g["remaining"] for g in granted) == list(range(0, 500, 50))
        commits = await asyncio.gather(*(settle(stack, g["id"], "commit") for g in granted))
        assert {status for status, _ in commits} == {200}
        assert await book(stack) == {"tenant|acme": (500, 0)}


async def test_commit_charges_the_actual_amount_once(tmp_path: Path, store_url: str) -> None:
    async with proxy(tmp_path, store_url) as stack:
        held = await reserve(stack, {"action": "send_email"})
        assert (held["amount"], held["unit"], held["action"]) == (50, RISK, "send_email")
        status, first = await settle(stack, held["id"], "commit", {"amount": 30})
        assert status == 200
        assert (first["status"], first["amount"], first["reserved"]) == ("COMMITTED", 30, 50)
        assert await book(stack) == {"tenant|acme": (30, 0)}
        status, again = await settle(stack, held["id"], "commit", {"amount": 40})
        assert (status, again) == (200, first)
        assert await book(stack) == {"tenant|acme": (30, 0)}
        other = await reserve(stack, {"unit": RISK, "amount": 20})
        status, default = await settle(stack, other["id"], "commit")
        assert (status, default["amount"]) == (200, 20)
        assert await book(stack) == {"tenant|acme": (50, 0)}


@EVERY_STORE
async def test_the_audit_entry_of_a_reservation_names_its_action(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        named = await reserve(stack, {"action": "send_email"})
        priced = await reserve(stack, {"unit": RISK, "amount": 20})
        entries = [e.fields for e in await store(stack).audit("acme") if e.kind == "reserve"]
        assert [(e["reservation"], e.get("action")) for e in entries] == [
            (named["id"], "send_email"),
            (priced["id"], None),
        ]


async def test_release_frees_it_and_contradicting_settles_are_409(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        bot = scope(agent="support-bot")
        held = await reserve(stack, {"action": "send_email"}, bot)
        assert await book(stack) == {"tenant|acme": (0, 50), "agent|support-bot": (0, 50)}
        status, released = await settle(stack, held["id"], "release", headers=bot)
        assert (status, released["status"]) == (200, "RELEASED")
        assert await book(stack) == {"tenant|acme": (0, 0), "agent|support-bot": (0, 0)}
        assert await settle(stack, held["id"], "release", headers=bot) == (200, released)
        status, error = await settle(stack, held["id"], "commit", headers=bot)
        assert (status, error["error"]["code"]) == (409, "reservation_released")
        done = await reserve(stack, {"action": "send_email"})
        assert (await settle(stack, done["id"], "commit"))[0] == 200
        status, error = await settle(stack, done["id"], "release")
        assert (status, error["error"]["code"]) == (409, "reservation_settled")
        assert await book(stack) == {"tenant|acme": (50, 0), "agent|support-bot": (0, 0)}


async def test_unknown_ids_and_other_tenants_reservations_are_404(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        held = await reserve(stack, {"action": "send_email"})
        for rid, headers in (
            (held["id"], scope("beta")),
            ("act_" + "0" * 32, scope()),
            ("not-an-id", scope()),
        ):
            for how in ("commit", "release"):
                status, error = await settle(stack, rid, how, headers=headers)
                assert (status, error["error"]["type"]) == (404, "not_found_error"), rid
            status, _, _ = await call(stack, "GET", f"{RESERVATIONS}/{rid}", headers=headers)
            assert status == 404
        assert await book(stack) == {"tenant|acme": (0, 50)}
        assert await book(stack, "beta") == {}


async def test_another_scope_of_the_tenant_can_neither_read_nor_settle_a_reservation(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        bot = scope(agent="support-bot")
        held = await reserve(stack, {"action": "send_email"}, bot)
        for other in (scope(agent="sales-bot"), scope()):
            for how in ("commit", "release"):
                status, error = await settle(stack, held["id"], how, headers=other)
                assert (status, error["error"]["code"]) == (404, "reservation_not_found"), other
            status, _, _ = await call(stack, "GET", f"{RESERVATIONS}/{held['id']}", headers=other)
            assert status == 404
        assert await book(stack) == {"tenant|acme": (0, 50), "agent|support-bot": (0, 50)}
        status, done = await settle(stack, held["id"], "commit", {"amount": 20}, headers=bot)
        assert (status, done["status"]) == (200, "COMMITTED")
        assert await book(stack) == {"tenant|acme": (20, 0), "agent|support-bot": (20, 0)}


class Gate:
    """Holds the next reservation lookup, once armed, after it has read the record and until
    opened: a commit's, so that a release is answered between its check and its ledger call."""

    def __init__(self) -> None:
        self.armed = False
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()

    async def passing(self) -> None:
        if self.armed:
            self.armed = False
            self.reached.set()
            await self.opened.wait()


def gated_ledger(store_url: str, settings: ReservationSettings, gate: Gate) -> Any:
    """The store for `store_url`, its reservation lookups going through `gate`."""
    kind: Any = MemoryLedger if store_url == "memory://" else RedisLedger

    class Gated(kind):  # type: ignore[misc,valid-type]
        async def reservation(self, tenant: str, rid: str) -> ReservationRecord | None:
            record = await super().reservation(tenant, rid)
            await gate.passing()
            return cast(ReservationRecord | None, record)

    return Gated(settings, "me") if kind is MemoryLedger else Gated(store_url, settings, "me")


async def test_a_commit_racing_a_release_is_refused_once_the_release_was_answered(
    tmp_path: Path, store_url: str
) -> None:
    policy, gate = make_policy(tmp_path), Gate()
    ledger = gated_ledger(store_url, policy.reservations, gate)
    try:
        async with local_stack(policy, store=store_url, ledger=ledger, sweep_every=None) as stack:
            held = await reserve(stack, {"action": "send_email"})
            gate.armed = True
            committing = spawn(settle(stack, held["id"], "commit"), name="racing commit")
            await asyncio.wait_for(gate.reached.wait(), 10)  # it saw the reservation OPEN
            status, released = await settle(stack, held["id"], "release")
            assert (status, released["status"]) == (200, "RELEASED")
            gate.opened.set()
            status, error = await committing
            assert (status, error["error"]["code"]) == (409, "reservation_released")
            assert await book(stack) == {"tenant|acme": (0, 0)}
            record = await stack.ledger.reservation("acme", held["id"])
            assert record is not None and record.state == "RELEASED"
    finally:
        await ledger.close()


async def test_get_shows_the_reservation_as_the_store_keeps_it(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        held = await reserve(stack, {"action": "send_email", "ttl": 60})
        status, _, got = await call(stack, "GET", f"{RESERVATIONS}/{held['id']}")
        assert status == 200
        assert (got["status"], got["reserved"], got["committed"]) == ("OPEN", 50, None)
        assert abs(got["expires_at_ms"] - held["expires_at_ms"]) < 5_000
        await settle(stack, held["id"], "commit", {"amount": 45})
        _, _, got = await call(stack, "GET", f"{RESERVATIONS}/{held['id']}")
        assert (got["status"], got["amount"], got["committed"]) == ("COMMITTED", 45, 45)


async def test_a_commit_above_its_reservation_is_400_and_commits_nothing(
    tmp_path: Path, store_url: str
) -> None:
    """The caller states what an action cost: never more than it reserved (the README's rule),
    however large the number it sends."""
    async with proxy(tmp_path, store_url) as stack:
        held = await reserve(stack, {"unit": RISK, "amount": 1})
        for amount in (2, 2**52 - 1):
            status, error = await settle(stack, held["id"], "commit", {"amount": amount})
            assert status == 400, error
            assert (error["error"]["code"], error["error"]["param"]) == (
                "amount_above_reservation",
                "amount",
            )
            assert "at most 1" in error["error"]["message"]
        assert await book(stack) == {"tenant|acme": (0, 1)}
        _, _, got = await call(stack, "GET", f"{RESERVATIONS}/{held['id']}")
        assert got["status"] == "OPEN"
        status, done = await settle(stack, held["id"], "commit", {"amount": 1})
        assert (status, done["status"], done["amount"]) == (200, "COMMITTED", 1)
        assert await book(stack) == {"tenant|acme": (1, 0)}


async def test_a_reservation_past_what_the_ledger_holds_exactly_is_400_and_reserves_nothing(
    tmp_path: Path, store_url: str
) -> None:
    """A shadow tenant's reservations are never denied: only the ledger's safe range (2**53 - 1
    units per sum) stops them growing, with a 400 that writes nothing."""
    async with proxy(tmp_path, store_url) as stack:
        huge = {"unit": RISK, "amount": 2**52 - 1}
        for _ in range(2):
            await reserve(stack, huge, scope("shady"))
        status, _, error = await call(stack, "POST", RESERVATIONS, huge, scope("shady"))
        assert (status, error["error"]["code"]) == (400, "amount_out_of_range"), error
        assert await book(stack, "shady") == {"tenant|shady": (0, 2 * (2**52 - 1))}


# --- expiry ----------------------------------------------------------------------------------


async def test_abandoned_reservation_is_charged_at_its_ttl_and_a_late_commit_corrects_it(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        short = await reserve(stack, {"action": "send_email", "ttl": 1})
        long = await reserve(stack, {"action": "send_email"})
        await set_clock_offset(stack.ledger, "acme", 2_000)
        assert await stack.ledger.sweep_all() == 1
        assert await book(stack) == {"tenant|acme": (50, 50)}
        _, _, got = await call(stack, "GET", f"{RESERVATIONS}/{short['id']}")
        assert got["status"] == "EXPIRED_CHARGED"
        status, late = await settle(stack, short["id"], "commit", {"amount": 30})
        assert (status, late["status"], late["amount"]) == (200, "COMMITTED", 30)
        assert await book(stack) == {"tenant|acme": (30, 50)}
        _, _, still = await call(stack, "GET", f"{RESERVATIONS}/{long['id']}")
        assert still["status"] == "OPEN"


async def test_abandoned_reservation_is_released_when_the_policy_says_so(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url, on_expiry="release") as stack:
        held = await reserve(stack, {"action": "send_email", "ttl": 1})
        await set_clock_offset(stack.ledger, "acme", 2_000)
        assert await stack.ledger.sweep_all() == 1
        assert await book(stack) == {"tenant|acme": (0, 0)}
        status, again = await settle(stack, held["id"], "release")
        assert (status, again["status"]) == (200, "EXPIRED_RELEASED")
        # Released at expiry is released: a commit after it is refused, as after a release.
        status, late = await settle(stack, held["id"], "commit")
        assert (status, late["error"]["code"]) == (409, "reservation_released")
        assert "expired and was released" in late["error"]["message"]
        assert await book(stack) == {"tenant|acme": (0, 0)}


# --- idempotency, bad input, lifecycle ---------------------------------------------------------


async def test_a_retry_with_the_same_idempotency_key_reserves_once(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        body = {"action": "send_email", "idempotency_key": "order-7-confirmation"}
        first = await reserve(stack, body)
        status, headers, again = await call(stack, "POST", RESERVATIONS, body)
        assert (status, headers.get("X-Cycles-Replayed"), again) == (201, "true", first)
        assert await book(stack) == {"tenant|acme": (0, 50)}
        header_key = {**scope(), "Idempotency-Key": "order-7-confirmation"}
        status, _, _ = await call(stack, "POST", RESERVATIONS, {"action": "send_email"}, header_key)
        assert status == 422  # the same key with another request (its body has no key)
        reused = {"action": "issue_refund", "idempotency_key": "order-7-confirmation"}
        status, _, error = await call(stack, "POST", RESERVATIONS, reused)
        assert (status, error["error"]["type"]) == (422, "idempotency_key_reused")
        assert await book(stack) == {"tenant|acme": (0, 50)}


BAD_INPUTS = [
    ({"action": "launch_rockets"}, scope(), "unknown_action"),
    ({"unit": RISK, "amount": 10}, scope("plain"), "unit_not_budgeted"),
    ({"unit": "USD", "amount": 10}, scope(), "invalid_unit"),
    ({"unit": RISK, "amount": -5}, scope(), "invalid_amount"),
    ({"unit": RISK, "amount": 0}, scope(), "invalid_amount"),
    ({"unit": RISK, "amount": 2.5}, scope(), "invalid_amount"),
    ({"unit": RISK, "amount": "50"}, scope(), "invalid_amount"),
    ({"unit": RISK, "amount": 2**52}, scope(), "invalid_amount"),
    ({"unit": RISK}, scope(), "invalid_reservation"),
    ({"action": "send_email", "amount": 10}, scope(), "invalid_reservation"),
    ({"action": "send_email", "ttl": 1801}, scope(), "invalid_ttl"),
    ({"action": "send_email", "ttl": 0}, scope(), "invalid_ttl"),
    ({"action": "send_email", "ttl": 1.5}, scope(), "invalid_ttl"),
    ({"action": "send_email", "idempotency_key": ""}, scope(), "invalid_idempotency_key"),
    ({"action": "send_email", "amout": 3}, scope(), "unknown_field"),
    (["send_email"], scope(), "invalid_json"),
    ({"action": "send_email"}, {"X-Cycles-Agent": "bot"}, "missing_tenant"),
    ({"action": "send_email"}, scope("acme", agent="a b"), "invalid_scope_header"),
]


@pytest.mark.parametrize(("body", "headers", "code"), BAD_INPUTS)
async def test_bad_inputs_are_400_with_a_clear_message_and_change_nothing(
    tmp_path: Path, store_url: str, body: Any, headers: dict[str, str], code: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        status, _, error = await call(stack, "POST", RESERVATIONS, body, headers)
        assert status == 400, error
        assert error["error"]["code"] == code
        assert len(error["error"]["message"]) > 30
        tenant = headers.get("X-Cycles-Tenant", "acme")
        assert await stack.ledger.balances(tenant) == []
        trail = await store(stack).audit(tenant)
        assert [e for e in trail if e.kind == "reserve"] == []


async def test_malformed_json_and_commit_amounts_are_400(tmp_path: Path, store_url: str) -> None:
    async with proxy(tmp_path, store_url) as stack:
        status, _, error = await call(stack, "POST", RESERVATIONS, raw=b"{action:")
        assert (status, error["error"]["code"]) == (400, "invalid_json")
        held = await reserve(stack, {"action": "send_email"})
        for amount in (-1, 1.5, "30"):
            status, error = await settle(stack, held["id"], "commit", {"amount": amount})
            assert (status, error["error"]["code"]) == (400, "invalid_amount")
        status, _ = await settle(stack, held["id"], "release", {"amount": 1})
        assert status == 400
        assert await book(stack) == {"tenant|acme": (0, 50)}


async def test_suspended_and_closed_tenants_are_refused_but_settle_what_they_hold(
    tmp_path: Path, store_url: str
) -> None:
    """New reservations and balances are refused; what the tenant held before is still read
    (to decide between commit and release) and settled, so its real spend is recorded."""
    async with proxy(tmp_path, store_url) as stack:
        held = await reserve(stack, {"action": "send_email"})
        for status_now in ("suspended", "closed"):
            await store(stack).change_status("acme", status_now, actor="test", reason="test")
            stack.app[RUNTIME].forget_tenant("acme")
            status, _, error = await call(stack, "POST", RESERVATIONS, {"action": "send_email"})
            assert (status, error["error"]["type"]) == (403, f"tenant_{status_now}")
            status, _, error = await call(stack, "GET", "/v1/cycles/balances")
            assert (status, error["error"]["type"]) == (403, f"tenant_{status_now}")
            status, _, seen = await call(stack, "GET", f"{RESERVATIONS}/{held['id']}")
            assert (status, seen["status"]) == (200, "OPEN")
        assert (await settle(stack, held["id"], "commit"))[0] == 200
        assert await book(stack) == {"tenant|acme": (50, 0)}


async def test_shadow_tenant_is_never_blocked_and_told_what_enforcement_would_do(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        refund = {"action": "issue_refund"}
        for _ in range(2):
            await reserve(stack, refund, scope("shady"))
        status, headers, third = await call(stack, "POST", RESERVATIONS, refund, scope("shady"))
        assert status == 201
        assert third["shadow_decision"] == "DENY budget tenant"
        assert headers["X-Cycles-Shadow-Decision"] == "DENY budget tenant"
        assert await book(stack, "shady") == {"tenant|shady": (0, 600)}


# --- units: actions and LLM calls never draw on each other's budgets ---------------------------


async def test_llm_calls_reserve_only_money_and_actions_only_points(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        headers = scope(agent="support-bot")
        async with (
            aiohttp.ClientSession() as http,
            http.post(stack.url + "/v1/chat/completions", json=chat(), headers=headers) as answer,
        ):
            assert answer.status == 200
        assert await book(stack) == {}
        usd = await book(stack, unit="USD")
        assert list(usd) == ["tenant|acme"] and usd["tenant|acme"][0] > 0
        await reserve(stack, {"action": "send_email"}, headers)
        assert await book(stack, unit="USD") == usd
        assert await book(stack) == {"tenant|acme": (0, 50), "agent|support-bot": (0, 50)}


async def test_a_tenant_override_changes_the_call_budget_not_the_action_budget(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        await store(stack).update_tenant(
            "acme", actor="test", reason="test", overrides={"tenant": 100}
        )
        granted = await reserve(stack, {"action": "issue_refund"})
        assert granted["remaining"] == 300  # of 500 points: the override (100 units) is USD's
        status, _, body = await call(stack, "GET", "/v1/cycles/balances")
        assert status == 200
        limits = {(line["unit"], line["level"]): line["limit"] for line in body["lines"]}
        assert limits == {("USD", "tenant"): 100, (RISK, "tenant"): 500}


async def test_balances_show_what_is_left_per_unit_on_the_scope_path(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack:
        headers = scope(agent="support-bot")
        held = await reserve(stack, {"action": "send_email"}, headers)
        await settle(stack, held["id"], "commit", headers=headers)
        await reserve(stack, {"action": "send_email"}, scope())
        status, _, body = await call(stack, "GET", "/v1/cycles/balances", headers=headers)
        assert status == 200
        assert (body["tenant"], body["scope"]) == ("acme", "tenant=acme/agent=support-bot")
        assert body["remaining"][RISK] == {
            "units": 150,
            "text": "150 RISK_POINTS",
            "level": "agent",
            "value": "support-bot",
        }
        assert body["remaining"]["USD"]["text"] == "5.000000 USD"
        tenant = next(x for x in body["lines"] if x["unit"] == RISK and x["level"] == "tenant")
        assert (tenant["spent"], tenant["reserved"], tenant["remaining"]) == (50, 50, 400)
        assert tenant["text"] == "400 RISK_POINTS" and tenant["period"].startswith("m")


async def test_action_commits_and_denials_alert_as_llm_calls_do(
    tmp_path: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cycles.alerts")
    async with proxy(tmp_path, store_url) as stack:
        for _ in range(5):
            held = await reserve(stack, {"action": "send_email"})
            await settle(stack, held["id"], "commit")
        await reserve(stack, {"unit": RISK, "amount": 250})
        for _ in range(2):
            status, _, _ = await call(stack, "POST", RESERVATIONS, {"action": "send_email"})
            assert status == 402
    events = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "cycles.alerts"]
    assert [(e["type"], e["level"], e["unit"], e.get("threshold")) for e in events] == [
        ("budget.threshold", "tenant", RISK, "50%"),
        ("budget.first_deny", "tenant", RISK, None),
    ]


async def test_a_reservation_made_on_one_replica_is_settled_on_another(
    tmp_path: Path, redis_url: str
) -> None:
    async with proxy(tmp_path, redis_url) as one, proxy(tmp_path, redis_url) as two:
        held = await reserve(one, {"action": "send_email"})
        status, done = await settle(two, held["id"], "commit", {"amount": 20})
        assert (status, done["status"], done["amount"]) == (200, "COMMITTED", 20)
        assert await settle(one, held["id"], "commit") == (200, done)
        assert await book(one) == {"tenant|acme": (20, 0)}


async def test_gateway_keys_reserve_for_their_tenant_only(tmp_path: Path, store_url: str) -> None:
    gateway = dataclasses.replace(make_policy(tmp_path), identity="api_key")
    async with local_stack(gateway, store=store_url, sweep_every=None) as stack:
        keys = stack.app[API_KEYS]
        acme, _ = await keys.create("acme")
        beta, _ = await keys.create("beta")
        held = await reserve(stack, {"action": "send_email"}, {"Authorization": f"Bearer {acme}"})
        status, _ = await settle(
            stack, held["id"], "commit", headers={"Authorization": f"Bearer {beta}"}
        )
        assert status == 404
        status, _, _ = await call(stack, "POST", RESERVATIONS, {"action": "send_email"}, {})
        assert status == 401
        assert await book(stack) == {"tenant|acme": (0, 50)}


async def test_the_store_keeps_what_settling_from_another_instance_needs(store_url: str) -> None:
    stores = open_store(store_url, ReservationSettings(cap_ms=60_000))
    ledger = stores.ledger
    lines = [
        BudgetLine("tenant", "acme", RISK, "month", 500),
        BudgetLine("agent", "bot", RISK, "none", 200),
    ]
    try:
        before = wall_clock_ms()
        asks = [
            ReserveRequest("acme", rid, lines, [Candidate({RISK: 50})], ttl_ms=ttl)
            for rid, ttl in (("act_a", 5_000), ("act_b", 10**9))
        ]
        results = [await ledger.reserve(ask) for ask in asks]
        got = await ledger.reservation("acme", "act_a")
        assert got is not None and results[0].reservation is not None
        fields = results[0].reservation.fields
        assert got == ReservationRecord("act_a", "OPEN", got.deadline_ms, {RISK: 50}, fields)
        assert before + 5_000 <= got.deadline_ms <= wall_clock_ms() + 5_000 + 1_000
        capped = await ledger.reservation("acme", "act_b")
        assert capped is not None and capped.deadline_ms <= wall_clock_ms() + 60_000 + 1_000
        assert await ledger.reservation("beta", "act_a") is None
        now = await ledger.lines("acme", lines)
        period = results[0].lines[0].period_id
        assert [(x.period_id, x.spent, x.reserved, x.remaining) for x in now] == [
            (period, 0, 100, 400),
            ("-", 0, 100, 100),
        ]
        await ledger.commit(results[0].reservation, {RISK: 20})
        settled = await ledger.reservation("acme", "act_a")
        assert settled is not None and (settled.state, settled.actual) == ("COMMITTED", {RISK: 20})
    finally:
        await stores.close()


# --- the client ------------------------------------------------------------------------------


async def test_client_commits_on_success_and_releases_on_exception(
    tmp_path: Path, store_url: str
) -> None:
    async with (
        proxy(tmp_path, store_url) as stack,
        Cycles(stack.url + "/v1", tenant="acme", agent="support-bot") as cycles,
    ):
        async with cycles.reserve(action="send_email") as held:
            assert await book(stack) == {"tenant|acme": (0, 50), "agent|support-bot": (0, 50)}
            held.actual = 40
        assert held.settled is not None and held.settled.status == "COMMITTED"
        assert await book(stack) == {"tenant|acme": (40, 0), "agent|support-bot": (40, 0)}
        with pytest.raises(RuntimeError, match="smtp down"):
            async with cycles.reserve(unit=RISK, amount=30) as failed:
                raise RuntimeError("smtp down")
        assert failed.settled is not None and failed.settled.status == "RELEASED"
        assert await book(stack) == {"tenant|acme": (40, 0), "agent|support-bot": (40, 0)}
        balances = await cycles.balances()
        assert balances.remaining[RISK] == 160 and balances.text[RISK] == "160 RISK_POINTS"


async def test_client_raises_budget_denied_before_the_block_runs(
    tmp_path: Path, store_url: str
) -> None:
    async with proxy(tmp_path, store_url) as stack, Cycles(stack.url, tenant="acme") as cycles:
        ran = False
        with pytest.raises(BudgetDenied) as denied:
            async with cycles.reserve(unit=RISK, amount=501):
                ran = True
        assert not ran and denied.value.status == 402
        assert denied.value.remaining == "500 RISK_POINTS"
        with pytest.raises(CyclesAPIError) as unknown:
            await cycles.commit("act_" + "0" * 32)
        assert unknown.value.status == 404 and unknown.value.code == "reservation_not_found"
        assert await book(stack) == {}


# --- the policy ------------------------------------------------------------------------------


def test_the_policy_prices_actions_and_budgets_both_units_on_one_level(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    assert policy.actions["send_email"].amount == 50
    plan = policy.plans["ops"]
    assert [(b.level, b.unit) for b in plan.budgets] == [("tenant", "USD")]
    assert [(b.level, b.unit, b.limit) for b in plan.action_budgets] == [
        ("tenant", RISK, 500),
        ("agent", RISK, 200),
    ]
    text = describe(policy)
    assert "tenant     500 RISK_POINTS per month (actions)" in text
    assert "send_email    50 RISK_POINTS" in text


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        (
            "plans: {p: {budgets: {tenant: {limit: 5, unit: RISK_POINTS}}}}",
            "plans.p.budgets.tenant.unit: RISK_POINTS budgets are for actions",
        ),
        ("actions: {mail: {TOKENS: 1}}", "actions.mail.TOKENS: TOKENS is not a price"),
        ("actions: {mail: {RISK_POINTS: 1.5}}", "is not a whole number"),
        ("actions: {mail: {RISK_POINTS: 0}}", "an action must cost at least 1"),
        ("actions: {mail: {}}", "price the action in exactly one unit"),
        ("actions: {'a b': {RISK_POINTS: 1}}", "action name 'a b' is invalid"),
    ],
)
def test_policy_mistakes_about_actions_name_the_field(
    tmp_path: Path, yaml: str, message: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml + "\n")
    with pytest.raises(PolicyError, match=message.replace("(", r"\(")):
        load_policy(path)


def test_the_client_sends_the_scope_headers_the_proxy_reads() -> None:
    """proxy/client.py keeps its own copy (an app may copy the module alone): it must match."""
    from proxy.budget.scopes import HEADERS
    from proxy.client import SCOPE_HEADERS

    assert dict(HEADERS) == SCOPE_HEADERS
