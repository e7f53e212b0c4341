"""Budget alerts: a commit crossing a threshold of a line's limit is announced once per period
and scope, to a signed webhook (retried) and the log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
import pytest
from admin_support import stacks
from aiohttp import web
from alerts_support import (  # noqa: F401  (fast_retries: an autouse fixture)
    LIMIT,
    SCOPE,
    alerting_policy,
    fast_retries,
    quiet,
    receiver,
    verify,
)
from hooks_support import quota_counters, sweep_tenant
from support import POLICY, chat, dated

from proxy.core import tasks
from proxy.core.errors import PolicyError
from proxy.core.types import ReservationSettings
from proxy.gateway import alerts
from proxy.policy import load_policy
from proxy.store.ledger.base import (
    AlertLimits,
    BudgetLine,
    Candidate,
    Crossing,
    Ledger,
    Reservation,
    ReserveRequest,
)
from proxy.store.open import open_store
from proxy.testing.local import Stack, local_stack, serving


def stack_for(tmp_path: Path, hook_url: str) -> AbstractAsyncContextManager[Stack]:
    return local_stack(alerting_policy(tmp_path, hook_url), sweep_every=None)


async def call(stack: Stack, max_tokens: int) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{stack.url}/v1/chat/completions", json=chat("hi", max_tokens), headers=SCOPE
        ) as answer,
    ):
        assert answer.status == 200, await answer.text()
    await quiet()


async def spent(ledger: Ledger) -> int:
    rows = [r for r in await ledger.balances("alpha") if r.level == "tenant"]
    assert len(rows) == 1, rows
    return rows[0].spent


async def test_crossing_80_percent_fires_one_signed_event_per_period(
    tmp_path: Path, store_url: str
) -> None:
    async with receiver() as (hook, url):
        stack_policy = alerting_policy(tmp_path, url)
        async with local_stack(stack_policy, store=store_url, sweep_every=None) as stack:
            await call(stack, 300)
            first = await spent(stack.ledger)
            assert first < LIMIT // 2
            assert hook.received == []
            await call(stack, 500)  # from under 50 % to over 80 %: both thresholds, once each
            second = await spent(stack.ledger)
            assert LIMIT * 8 // 10 <= second < LIMIT
            assert hook.thresholds() == ["50%", "80%"]
            await call(stack, 20)  # still above 80 %, below 100 %: nothing new
            await call(stack, 20)
            assert await spent(stack.ledger) < LIMIT
            counters = await quota_counters(stack.ledger, "alpha")
    assert hook.thresholds() == ["50%", "80%"]
    assert len(hook.received) == 2
    for headers, body in hook.received:
        assert verify(headers, body)
    event = next(e for e in hook.accepted if e["threshold"] == "80%")
    assert event["type"] == "budget.threshold"
    assert (event["tenant"], event["level"], event["value"]) == ("alpha", "tenant", "alpha")
    assert (event["unit"], event["limit"], event["spent"]) == ("TOKENS", LIMIT, second)
    assert event["period"].startswith("m") and event["id"].endswith("/80%")
    assert sorted(k for k in counters if k.startswith("q|alert|")) == [
        f"q|alert|tenant|alpha|TOKENS|{event['period']}|5000",
        f"q|alert|tenant|alpha|TOKENS|{event['period']}|8000",
    ]


async def test_a_failing_webhook_gets_the_event_once_after_retries(tmp_path: Path) -> None:
    async with receiver([500, 503]) as (hook, url), stack_for(tmp_path, url) as stack:
        await call(stack, 850)
    assert hook.thresholds() == ["50%", "80%"]
    attempts = [orjson.loads(body)["threshold"] for _, body in hook.received]
    assert len(attempts) == 4  # two refused, then each threshold delivered
    assert all(verify(headers, body) for headers, body in hook.received)


async def test_alert_is_logged_even_without_a_webhook_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("CYCLES_ALERT_SECRET")
    caplog.set_level(logging.INFO, "cycles.alerts")
    async with receiver() as (hook, url), stack_for(tmp_path, url) as stack:
        await call(stack, 600)
    lines = [r.getMessage() for r in caplog.records if r.name == "cycles.alerts"]
    events = [orjson.loads(text) for text in lines if text.startswith("{")]
    assert [(e["event"], e["threshold"]) for e in events] == [("alert", "50%")]
    assert hook.received == []  # never sent unsigned when the secret is missing


async def test_a_plan_can_replace_the_thresholds(tmp_path: Path) -> None:
    plan_alerts = '    alerts: {thresholds: ["90%"]}'
    async with receiver() as (hook, url):
        stack_policy = alerting_policy(tmp_path, url, plan_alerts)
        assert stack_policy.plans["test"].alerts == (9000,)
        async with local_stack(stack_policy, sweep_every=None) as stack:
            await call(stack, 850)
            assert hook.received == []
            await call(stack, 100)
    assert hook.thresholds() == ["90%"]


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ('thresholds: ["85"]', "not an alert threshold"),
        ("thresholds: [80]", "not an alert threshold"),
        ('thresholds: ["120%"]', "at most 100"),
        ('thresholds: ["0%"]', "above 0"),
        ("webhooks: [{url: 'ftp://x/y'}]", "not an http(s) URL"),
        ("webhooks: [{url: 'https://x/y', secret_env: 'no-such name'}]", "environment variable"),
        ("webhooks: [{url: 'https://x/y', secret: abc}]", "unknown field"),
    ],
)
def test_bad_alerts_section_is_refused_with_its_line(
    tmp_path: Path, written: str, message: str
) -> None:
    text = POLICY.format(mode="enforce", budgets="      tenant: {limit: 1}", extra="")
    path = tmp_path / "policy.yaml"
    path.write_text(text + f"alerts: {{{written}}}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert message in str(caught.value)
    assert "policy.yaml:" in str(caught.value) and "alerts." in str(caught.value)


def test_threshold_percentages_become_basis_points(tmp_path: Path) -> None:
    text = POLICY.format(mode="enforce", budgets="      tenant: {limit: 1}", extra="")
    path = tmp_path / "policy.yaml"
    path.write_text(text + 'alerts: {thresholds: ["80%", "12.5%", "100%", "80%"]}\n')
    loaded = load_policy(path)
    assert loaded.alerts.thresholds == (1250, 8000, 10000)
    assert loaded.plans["test"].alerts == (1250, 8000, 10000)
    assert alerts.alert_event("t", _crossing(1250), 0)["threshold"] == "12.5%"


def _crossing(bp: int) -> Crossing:
    return Crossing("tenant|t|USD|m20261101", bp, 100, 20)


# --- the stores: crossing and dedupe inside the commit -----------------------------------------


MONTH_FIELD = "tenant|acme|USD|m%Y%m01"


async def hold(ledger: Ledger, rid: str, estimate: int) -> Reservation:
    line = BudgetLine("tenant", "acme", "USD", "month", 1000)
    request = ReserveRequest("acme", rid, [line], [Candidate({"USD": estimate})], alerts=(8000,))
    result = await ledger.reserve(request)
    assert result.reservation is not None
    return result.reservation


async def test_a_threshold_fires_once_per_period_even_if_spent_falls_back(
    store_url: str,
) -> None:
    stores = open_store(store_url, ReservationSettings(cap_ms=0))
    ledger = stores.ledger
    before = datetime.now(UTC)
    try:
        expired = await hold(ledger, "b", 300)
        assert await sweep_tenant(ledger, "acme") == 1  # charged its estimate: spent 300, no alert
        first = await ledger.commit(await hold(ledger, "a", 100), {"USD": 550})
        [crossing] = first.crossed
        assert crossing.field in dated(before, MONTH_FIELD)
        assert crossing == Crossing(crossing.field, 8000, 1000, 850)
        # An expired reservation that produced nothing gives its 300 back: spent 550.
        assert (await ledger.commit(expired, {"USD": 0})).crossed == ()
        again = await ledger.commit(await hold(ledger, "c", 100), {"USD": 300})
        assert (again.charged, again.crossed) == ({"USD": 300}, ())
        assert (await ledger.commit(await hold(ledger, "d", 100), {"USD": 100})).crossed == ()
    finally:
        await stores.close()


async def test_a_commit_the_store_lost_still_reports_its_crossing(store_url: str) -> None:
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    month = datetime.now(UTC).strftime(MONTH_FIELD)
    ghost = Reservation("acme", "ghost", (month,), {"USD": 10}, (), (1000,), (5000, 8000))
    try:
        settled = await ledger.commit(ghost, {"USD": 600})
        assert (settled.state, settled.charged) == ("COMMITTED", {"USD": 600})
        assert settled.crossed == (Crossing(month, 5000, 1000, 600),)
        rows = await ledger.balances("acme")
        assert [(r.spent, r.reserved) for r in rows] == [(600, 0)]
    finally:
        await stores.close()


# --- per tenant: the policy's entry for the tenant, then the store's record ---------------------


async def test_a_tenant_entry_in_the_policy_replaces_its_plans_thresholds(tmp_path: Path) -> None:
    async with receiver() as (hook, url):
        alerting_policy(tmp_path, url)  # writes policy.yaml
        path = tmp_path / "policy.yaml"
        path.write_text(
            path.read_text().replace(
                "  alpha: {plan: test}", '  alpha: {plan: test, alerts: {thresholds: ["20%"]}}'
            )
        )
        tenant_policy = load_policy(path)
        assert tenant_policy.alerts_for("alpha", tenant_policy.plans["test"]) == (2000,)
        assert tenant_policy.alerts_for("beta", tenant_policy.plans["test"]) == (5000, 8000, 10000)
        async with local_stack(tenant_policy, sweep_every=None) as stack:
            await call(stack, 400)
    assert hook.thresholds() == ["20%"]


async def test_an_admin_change_of_a_tenants_thresholds_applies_to_the_next_call(
    tmp_path: Path, store_url: str
) -> None:
    async with receiver() as (hook, url):
        stack_policy = alerting_policy(tmp_path, url)
        async with stacks(stack_policy, store_url) as (stack, admin):
            await call(stack, 100)  # alpha is cached with the policy's thresholds
            status, body = await admin.call(
                "PATCH", "/admin/v1/tenants/alpha", {"alerts": {"thresholds": ["15%", "99.5%"]}}
            )
            assert status == 200, body
            assert body["alerts"] == {"thresholds": ["15%", "99.5%"], "source": "tenant"}
            await call(stack, 100)  # 100 → ~200 spent: crosses 15 %, not the policy's 50 %
            assert hook.thresholds() == ["15%"]
            status, body = await admin.call(
                "PATCH", "/admin/v1/tenants/alpha", {"alerts": "inherit"}
            )
            assert body["alerts"] == {"thresholds": ["50%", "80%", "100%"], "source": "policy"}
            await call(stack, 400)  # past 50 % under the policy's thresholds again
            record = await stack.stores.tenants.get_tenant("alpha")
            audit = await stack.stores.tenants.audit("alpha")
    assert hook.thresholds() == ["15%", "50%"]
    assert record.alerts is None
    changes = [e.fields["changes"] for e in audit if e.kind == "admin"]
    assert "alerts=->1500,9950" in changes and "alerts=1500,9950->" in changes


@pytest.mark.parametrize(
    ("alerts_body", "param"),
    [
        ({"thresholds": ["80"]}, "alerts.thresholds[0]"),
        ({"thresholds": ["50%", "101%"]}, "alerts.thresholds[1]"),
        ({"thresholds": "80%"}, "alerts"),
        ({"limits": ["80%"]}, "alerts"),
        ("none", "alerts"),
    ],
)
async def test_bad_tenant_thresholds_are_refused_and_change_nothing(
    tmp_path: Path, alerts_body: object, param: str
) -> None:
    async with (
        receiver() as (_hook, url),
        stacks(alerting_policy(tmp_path, url), "memory://") as (stack, admin),
    ):
        before = await stack.stores.tenants.get_tenant("alpha")
        status, body = await admin.call("PATCH", "/admin/v1/tenants/alpha", {"alerts": alerts_body})
        after = await stack.stores.tenants.get_tenant("alpha")
    assert status == 400
    assert body["error"]["param"] == param and "alerts" in body["error"]["message"]
    assert after == before


# --- the sweeper's charges for expired reservations alert like commits ---------------------------


@dataclass
class Collected:
    """An ExpiryAlerts that records what a sweep reports."""

    limits_by_tenant: dict[str, AlertLimits]
    crossed_by_tenant: list[tuple[str, list[Crossing]]] = field(default_factory=list)

    async def limits(self, tenant: str) -> AlertLimits | None:
        return self.limits_by_tenant.get(tenant)

    def crossed(self, tenant: str, crossings: Sequence[Crossing]) -> None:
        self.crossed_by_tenant.append((tenant, list(crossings)))


async def test_an_expiry_charge_crossing_a_threshold_alerts_once(store_url: str) -> None:
    stores = open_store(store_url, ReservationSettings(cap_ms=0, on_expiry="charge"))
    ledger = stores.ledger
    hook = Collected({"acme": AlertLimits((5000, 8000), {("tenant", "USD"): 1000})})
    ledger.expiry_alerts = hook
    before = datetime.now(UTC)
    try:
        month = (await hold(ledger, "a", 300)).fields[0]
        assert month in dated(before, MONTH_FIELD)
        assert await sweep_tenant(ledger, "acme") == 1  # spent 300: below 50 %
        assert hook.crossed_by_tenant == []
        await hold(ledger, "b", 300)
        await hold(ledger, "c", 250)
        assert await sweep_tenant(ledger, "acme") == 2  # spent 850: both marks, in one sweep
        assert hook.crossed_by_tenant == [
            (
                "acme",
                [
                    Crossing(month, 5000, 1000, 600),
                    Crossing(month, 8000, 1000, 850),
                ],
            )
        ]
        # A later commit cannot fire them again: the sweep recorded them in the store.
        assert (await ledger.commit(await hold(ledger, "d", 10), {"USD": 10})).crossed == ()
        counters = await quota_counters(ledger, "acme")
    finally:
        await stores.close()
    assert sorted(k for k in counters if k.startswith("q|alert|")) == [
        f"q|alert|{month}|5000",
        f"q|alert|{month}|8000",
    ]


class NeverAsked(Collected):
    async def limits(self, tenant: str) -> AlertLimits | None:
        raise AssertionError("a sweep that releases has no charge to check")


async def test_expiries_that_release_never_ask_for_limits(store_url: str) -> None:
    stores = open_store(store_url, ReservationSettings(cap_ms=0, on_expiry="release"))
    ledger = stores.ledger
    hook = NeverAsked({})
    ledger.expiry_alerts = hook
    try:
        await hold(ledger, "a", 900)
        assert await sweep_tenant(ledger, "acme") == 1
        assert [r.spent for r in await ledger.balances("acme")] == [0]
    finally:
        await stores.close()
    assert hook.crossed_by_tenant == []


async def test_the_apps_expiry_notifier_uses_the_tenants_limits_and_thresholds(
    tmp_path: Path,
) -> None:
    async with (
        receiver() as (hook, url),
        stacks(alerting_policy(tmp_path, url), "memory://") as (stack, admin),
    ):
        status, _ = await admin.call(
            "PATCH", "/admin/v1/tenants/alpha", {"overrides": {"tenant": "400"}}
        )
        assert status == 200
        notifier = stack.ledger.expiry_alerts
        assert isinstance(notifier, alerts.ExpiryNotifier)
        limits = await notifier.limits("alpha")
        assert limits == AlertLimits((5000, 8000, 10000), {("tenant", "TOKENS"): 400})
        assert await notifier.limits("no-such-tenant") is None
        notifier.crossed("alpha", [Crossing("tenant|alpha|TOKENS|m20261101", 8000, 400, 333)])
        await quiet()
    assert [(e["tenant"], e["threshold"], e["spent"]) for e in hook.accepted] == [
        ("alpha", "80%", 333)
    ]


async def test_deliveries_waiting_on_a_silent_webhook_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 14, item 5: every alert started a delivery that retries for up to a minute, so a
    webhook that never answers held one task per alert. At most MAX_PENDING are in flight; an
    alert beyond them is logged (it is in the log either way) and not sent."""
    monkeypatch.setattr(alerts, "MAX_PENDING", 3)
    monkeypatch.setattr(alerts, "TIMEOUT_S", 30.0)
    answer = asyncio.Event()

    async def silent(request: web.Request) -> web.Response:
        await answer.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", silent)
    async with serving(app) as url, stack_for(tmp_path, url + "/hook") as stack:
        fired = stack.app[alerts.ALERTS]
        for i in range(5):
            fired.fire({"type": "budget.threshold", "id": f"alpha/e{i}"})
        pending = [t for t in tasks.running() if t.get_name().startswith("alert ")]
        assert len(pending) == 3
        assert caplog.text.count("deliveries are still pending") == 2
        answer.set()
        await quiet()
