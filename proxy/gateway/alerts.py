"""Budget alerts: a commit that takes a line's `spent` across a threshold (`alerts:` in the
policy, e.g. 80 % of the line's limit) is told to operators once per period and scope.

The store decides, inside the commit's own atomic step, which thresholds were crossed first
(commit.lua; no extra round trip), so two instances never both fire. `Alerts` hears of commits
from the pipeline's events (CallSettled; `subscribe`, at startup) and from the spill's drain
(`on_commit`). The sweeper's charge for an expired reservation is checked the same way inside
its sweep step (ExpiryNotifier). Here each
crossing is written as one JSON log line (`"event": "alert"`) and POSTed to every webhook in a
background task, retried with exponential backoff; the response never waits for it. At most
MAX_PENDING deliveries are in flight; an alert beyond them is only logged.

A webhook receives `{"type": "budget.threshold", "id", "tenant", "level", "value", "unit",
"period", "threshold": "80%", "limit", "spent", "at_ms"}` (amounts in the line's integer unit:
USD in 10**-8 dollars, TOKENS as counts; `period` is the period id, e.g. "m20261101"). `id`
is the same on every retry and names the threshold, scope and period: receivers dedupe by it.

Also `budget.first_deny` (the first reserve of a period a budget line denies; the reserve script
decides it, ReserveResult.first_deny; heard of as CallDenied) and `ledger.epoch_lost`
(store/redis/safety.py, once per process). Every alert fired counts in `cycles_alerts_total{type}`.

Signature, when the webhook names `secret_env`: headers `X-Cycles-Timestamp: <unix seconds>`
and `X-Cycles-Signature: sha256=<hex>`, where hex is HMAC-SHA256 with the secret as key over
the bytes `<timestamp>.` followed by the raw body. Receivers recompute it, compare in constant
time, and reject timestamps too far from their clock (replays).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Mapping, Sequence

import aiohttp
import orjson
from aiohttp import web

from proxy.core.tasks import running, spawn
from proxy.gateway.context import Runtime
from proxy.gateway.events import CallDenied, CallSettled, Events
from proxy.gateway.metrics import Metrics
from proxy.policy.runtime import Webhook
from proxy.policy.units import percent
from proxy.store.ledger.base import (
    AlertLimits,
    Crossing,
    LineState,
    Reservation,
    ReserveResult,
    SettleResult,
)

log = logging.getLogger("cycles.alerts")

ATTEMPTS = 5
RETRY_DELAY_S = 0.5
"""Before the second attempt; doubled before each later one."""
TIMEOUT_S = 10.0
MAX_PENDING = 1000
"""Webhook deliveries in flight at most; an alert beyond them is logged, not sent."""
DELIVERY = "alert "
"""The name of a delivery's task starts with this."""
SIGNATURE = "X-Cycles-Signature"
TIMESTAMP = "X-Cycles-Timestamp"


class Alerts:
    """Fires the policy's alerts: logged, counted, and POSTed to its webhooks. `runtime` holds
    the policy in force (a reload may change the webhooks and thresholds)."""

    def __init__(self, runtime: Runtime, metrics: Metrics | None = None) -> None:
        self.runtime = runtime
        self._metrics = metrics

    def subscribe(self, events: Events) -> None:
        """Hear of denials and commits from the pipeline's events."""
        events.subscribe(CallDenied, self._denied)
        events.subscribe(CallSettled, self._settled)

    def _denied(self, event: CallDenied) -> None:
        if event.result is not None:
            self.first_deny(event.result, event.tenant)

    def _settled(self, event: CallSettled) -> None:
        if event.result is not None and event.tenant is not None:
            self.committed(event.tenant, event.result)

    def on_commit(self, reservation: Reservation, result: SettleResult) -> None:
        """The spill's OnCommit: a spilled charge written once the ledger answered again."""
        self.committed(reservation.tenant, result)

    def committed(self, tenant: str, result: SettleResult) -> None:
        """Announce the thresholds a commit crossed."""
        for crossing in result.crossed:
            self.fire(alert_event(tenant, crossing, _now_ms()))

    def first_deny(self, result: ReserveResult, tenant: str) -> None:
        """A reserve denied by a budget line for the first time in its period (the store
        decided, ReserveResult.first_deny): announce it once."""
        if result.first_deny is None:
            return
        self.fire(first_deny_event(tenant, result.first_deny, result.lines, _now_ms()))

    def epoch_lost(self, expected: str | None, found: str | None) -> None:
        """The ledger's store was flushed or replaced (store/redis/safety.py; called once per
        process)."""
        self.fire(
            {
                "type": "ledger.epoch_lost",
                "id": f"epoch/{expected}",
                "expected": expected,
                "found": found,
                "on_store_lost": self.runtime.policy.on_store_lost,
                "at_ms": _now_ms(),
            }
        )

    def fire(self, event: dict[str, object]) -> None:
        """Log `event`, count it (`cycles_alerts_total{type}`) and POST it to every webhook in
        the background."""
        log.info(orjson.dumps({"event": "alert", **event}).decode())
        if self._metrics is not None:
            self._metrics.alerts.labels(str(event["type"])).inc()
        body = orjson.dumps(event)
        for hook in self.runtime.policy.alerts.webhooks:
            if _pending() >= MAX_PENDING:
                log.error(
                    "alert %s not sent to %s: %d deliveries are still pending (slow or failing "
                    "webhooks); it is only in this log",
                    event["id"],
                    hook.url,
                    MAX_PENDING,
                )
                continue
            spawn(deliver(hook, body), name=f"{DELIVERY}{event['id']}")


ALERTS = web.AppKey("alerts", Alerts)


class ExpiryNotifier:
    """The sweep's side of threshold alerts (ledger.base.ExpiryAlerts): an expired reservation
    charged its estimate, and that charge crossed a threshold, so it alerts like a commit. The
    tenant's limits are read through the runtime: the policy (plans, thresholds) may be reloaded
    between sweeps."""

    def __init__(self, alerts: Alerts) -> None:
        self._alerts = alerts

    async def limits(self, tenant: str) -> AlertLimits | None:
        config = await self._alerts.runtime.directory.get(tenant)
        if config is None or not config.alerts:
            return None
        plan = config.plan
        limits: dict[tuple[str, str], int] = {
            (b.level, b.unit): b.limit_with(config.overrides)
            for b in (*plan.budgets, *plan.action_budgets)
        }
        return AlertLimits(config.alerts, limits)

    def crossed(self, tenant: str, crossings: Sequence[Crossing]) -> None:
        for crossing in crossings:
            self._alerts.fire(alert_event(tenant, crossing, _now_ms()))


def _pending() -> int:
    """Deliveries in flight (each retries for up to a minute)."""
    return sum(1 for task in running() if task.get_name().startswith(DELIVERY))


def first_deny_event(
    tenant: str, field: str, lines: tuple[LineState, ...], at_ms: int
) -> dict[str, object]:
    level, value, unit, period = field.split("|")
    limit = next((ln.line.limit for ln in lines if ln.field == field), None)
    return {
        "type": "budget.first_deny",
        "id": f"{tenant}/{field}/first_deny",
        "tenant": tenant,
        "level": level,
        "value": value,
        "unit": unit,
        "period": period,
        "limit": limit,
        "at_ms": at_ms,
    }


def _now_ms() -> int:
    return int(time.time() * 1000)


def alert_event(tenant: str, crossing: Crossing, at_ms: int) -> dict[str, object]:
    level, value, unit, period = crossing.field.split("|")
    threshold = percent(crossing.basis_points)
    return {
        "type": "budget.threshold",
        "id": f"{tenant}/{crossing.field}/{threshold}",
        "tenant": tenant,
        "level": level,
        "value": value,
        "unit": unit,
        "period": period,
        "threshold": threshold,
        "limit": crossing.limit,
        "spent": crossing.spent,
        "at_ms": at_ms,
    }


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The `X-Cycles-Signature` value for `body` sent at `timestamp`."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(hook: Webhook, body: bytes, env: Mapping[str, str]) -> dict[str, str] | None:
    """Headers for one attempt; None when the hook's secret is not in the environment."""
    headers = {"Content-Type": "application/json"}
    if hook.secret_env is None:
        return headers
    secret = env.get(hook.secret_env)
    if not secret:
        return None
    timestamp = str(int(time.time()))
    headers |= {TIMESTAMP: timestamp, SIGNATURE: signature(secret.encode(), timestamp, body)}
    return headers


async def deliver(hook: Webhook, body: bytes) -> bool:
    """POST `body` until a 2xx answer, at most ATTEMPTS times; True when one arrived. Its own
    session: alerts are rare, and the upstream session's tracing belongs to the call."""
    async with aiohttp.ClientSession() as session:
        return await _attempts(session, hook, body)


async def _attempts(session: aiohttp.ClientSession, hook: Webhook, body: bytes) -> bool:
    delay = RETRY_DELAY_S
    for attempt in range(1, ATTEMPTS + 1):
        headers = signed_headers(hook, body, os.environ)
        if headers is None:
            log.error("alert not sent to %s: %s is not set", hook.url, hook.secret_env)
            return False
        problem = await post(session, hook.url, body, headers)
        if problem is None:
            return True
        log.warning("alert to %s failed (attempt %d/%d): %s", hook.url, attempt, ATTEMPTS, problem)
        if attempt < ATTEMPTS:
            await asyncio.sleep(delay)
            delay *= 2
    log.error("alert to %s dropped after %d attempts", hook.url, ATTEMPTS)
    return False


async def post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> str | None:
    """None on a 2xx answer, else what went wrong. A redirect is not followed (aiohttp would
    follow it as a GET without the body): a 3xx is a failure, retried like any other."""
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    request = session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    try:
        async with request as response:
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
