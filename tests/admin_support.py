"""The admin API served beside an in-process stack, and a client for it: `stacks` for
test_admin and test_alerts, `admin_stack` for the tests of what operators send
(tests/admin/test_admin_inputs.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from proxy.admin.app import build_admin_app
from proxy.admin.auth import Tokens
from proxy.app import shared
from proxy.policy.runtime import Policy
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.local import Stack, local_stack, serving

ADMIN, READER = "admin-token-1", "read-token-1"
TRACEBACK_MARKS = (b"Traceback", b'File "', b"The proxy failed to handle")
"""What an answer showing the proxy's own failure (a stack trace, the 500 body) contains."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


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

    async def send(
        self,
        method: str,
        raw_path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """`raw_path` (with its query) exactly as written, percent-encoding included."""
        sent = {"Authorization": f"Bearer {ADMIN}", **(headers or {})}
        url = URL(self.url + raw_path, encoded=True)
        async with self.session.request(method, url, data=body, headers=sent) as r:
            return Answer(r.status, await r.read())


@asynccontextmanager
async def stacks(
    pol: Policy, store: str, fake: FakeUpstream | None = None
) -> AsyncIterator[tuple[Stack, Admin]]:
    async with local_stack(pol, store=store, fake=fake) as stack:
        admin_app = build_admin_app(shared(stack.app), tokens=Tokens((ADMIN,), (READER,)))
        async with serving(admin_app) as url, aiohttp.ClientSession() as session:
            yield stack, Admin(url, session)


@asynccontextmanager
async def admin_stack(pol: Policy, store: str) -> AsyncIterator[tuple[Stack, Admin]]:
    """A proxy on `store` (its fake provider too) and its admin listener."""
    async with local_stack(pol, store=store, sweep_every=None) as stack:
        app = build_admin_app(shared(stack.app), tokens=Tokens((ADMIN,), (READER,)))
        async with serving(app) as url, aiohttp.ClientSession() as session:
            yield stack, Admin(url, session)
