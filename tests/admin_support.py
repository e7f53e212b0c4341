"""The admin API served beside an in-process stack, and a client for it (test_admin,
test_alerts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from proxy.admin.app import build_admin_app
from proxy.admin.auth import Tokens
from proxy.fake_upstream import FakeUpstream
from proxy.local import Stack, local_stack, serving
from proxy.policy.runtime import Policy

ADMIN, READER = "admin-token-1", "read-token-1"


@dataclass(frozen=True)
class Admin:
    url: str
    session: aiohttp.ClientSession

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str = ADMIN,
        key: str | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        async with self.session.request(method, self.url + path, json=body, headers=headers) as r:
            return r.status, await r.json()


@asynccontextmanager
async def stacks(
    pol: Policy, store: str, fake: FakeUpstream | None = None
) -> AsyncIterator[tuple[Stack, Admin]]:
    async with local_stack(pol, store=store, fake=fake) as stack:
        admin_app = build_admin_app(stack.app, store, tokens=Tokens((ADMIN,), (READER,)))
        async with serving(admin_app) as url, aiohttp.ClientSession() as session:
            yield stack, Admin(url, session)
