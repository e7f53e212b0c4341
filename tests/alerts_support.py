"""Budget alerts' test parts: a webhook receiver, a policy that alerts to it, the receiver's
signature check written from the documented scheme (test_alerts, test_alert_events)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from support import POLICY

from proxy.core import tasks
from proxy.gateway import alerts
from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.testing.local import serving

SECRET = "alert-secret-for-tests"
SCOPE = {"X-Cycles-Tenant": "alpha", "X-Cycles-Workflow": "w", "X-Cycles-Run": "r1"}
LIMIT = 1000
"""The tenant's monthly TOKENS budget."""


@dataclass
class Receiver:
    """A webhook endpoint: answers `statuses` in turn (then 200), records each request."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((dict(request.headers), body))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.accepted.append(orjson.loads(body))
        return web.Response(status=status)

    def thresholds(self) -> list[str]:
        return sorted(event["threshold"] for event in self.accepted)


@asynccontextmanager
async def receiver(statuses: list[int] | None = None) -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver(list(statuses or []))
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    async with serving(app) as url:
        yield hook, url + "/hook"


def alerting_policy(tmp_path: Path, hook_url: str, plan_alerts: str = "") -> Policy:
    text = POLICY.format(
        mode="enforce",
        budgets=f"      tenant: {{limit: {LIMIT}, period: month, unit: TOKENS}}",
        extra=plan_alerts,
    )
    text += (
        'alerts:\n  thresholds: ["50%", "80%", "100%"]\n'
        f"  webhooks:\n    - {{url: {hook_url!r}, secret_env: CYCLES_ALERT_SECRET}}\n"
    )
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


async def quiet() -> None:
    """Wait until no call is settling and no alert is being delivered."""
    for _ in range(200):
        busy = [t for t in tasks.running() if t.get_name().startswith(("call ", "alert "))]
        if not busy:
            return
        await asyncio.wait(busy, timeout=5)
    raise AssertionError("background tasks did not finish")


def verify(headers: dict[str, str], body: bytes) -> bool:
    """A receiver's check, written from the documented scheme (not from proxy.gateway.alerts)."""
    timestamp = headers["X-Cycles-Timestamp"]
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(headers["X-Cycles-Signature"], "sha256=" + mac.hexdigest())


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYCLES_ALERT_SECRET", SECRET)
    monkeypatch.setattr(alerts, "RETRY_DELAY_S", 0.01)
