"""Helpers for the tenant-boundary tests (issue 14): a gateway policy as an operator writes it,
the proxy with its admin listener in this process, and plain HTTP calls to either."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from support import policy

from proxy.admin.app import build_admin_app
from proxy.admin.auth import Tokens
from proxy.app import shared
from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.local import Stack, local_stack, serving

ADMIN, READER = "admin-token-b", "read-token-b"
BUDGET = "tenant: {limit: 50, period: month}"


def gateway(tmp_path: Path, extra: str = "", budgets: str = BUDGET, plan: str = "") -> Policy:
    """The test policy (support.policy) in gateway mode, with `extra` top-level YAML and `plan`
    more of plan `test` (action_budgets, quotas)."""
    return with_top_level(tmp_path, budgets, f"identity: api_key\n{extra}", plan)


def sidecar(tmp_path: Path, extra: str = "", budgets: str = BUDGET) -> Policy:
    return with_top_level(tmp_path, budgets, f"identity: header\n{extra}")


def with_top_level(tmp_path: Path, budgets: str, settings: str, plan: str = "") -> Policy:
    policy(tmp_path, budgets, plan=plan)
    path = tmp_path / "policy.yaml"
    path.write_text(path.read_text().replace("identity: header\n", settings))
    return load_policy(path)


@dataclass(frozen=True)
class Admin:
    """The admin listener, called with the admin token unless told otherwise."""

    url: str
    session: aiohttp.ClientSession
    app: web.Application
    """The admin application (its idempotency store, for tests that read it)."""

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = ADMIN,
        idempotency_key: str | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        async with self.session.request(method, self.url + path, json=body, headers=headers) as r:
            text = await r.text()
            answer = await r.json() if r.content_type == "application/json" else text
            return r.status, dict(r.headers), answer


@asynccontextmanager
async def with_admin(
    pol: Policy, store: str, fake: FakeUpstream | None = None
) -> AsyncIterator[tuple[Stack, Admin]]:
    """The proxy (sweeper off) and its admin listener, both on loopback ports."""
    async with local_stack(pol, store=store, fake=fake, sweep_every=None) as stack:
        admin_app = build_admin_app(shared(stack.app), tokens=Tokens((ADMIN,), (READER,)))
        async with serving(admin_app) as url, aiohttp.ClientSession() as session:
            yield stack, Admin(url, session, admin_app)


async def call(
    stack: Stack,
    method: str,
    path: str,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
) -> tuple[int, Any]:
    """One call to the proxy port: (status, JSON answer or text)."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, stack.url + path, json=body, headers=headers) as answer,
    ):
        if answer.content_type == "application/json":
            return answer.status, await answer.json()
        return answer.status, await answer.text()


def bearer(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}
