"""Helpers for the tests of what the review of issue 15 found (tests/store/test_settle_edges.py,
tests/store/test_reclaim.py): a store that loses a record, a ledger that runs something between a
settle's lookup and its script, another replica on the same store, and a small actions
deployment."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import aiohttp
import orjson

from proxy.core.types import ReservationSettings
from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.store.ledger import MemoryLedger, RedisLedger
from proxy.store.ledger.base import ReservationRecord
from proxy.store.redis import layout
from proxy.store.redis.clients import open_client
from proxy.testing.local import Stack, local_stack

Store = MemoryLedger | RedisLedger
Hook = Callable[[], Awaitable[None]]
RESERVATIONS = "/v1/cycles/reservations"
ACME = {"X-Cycles-Tenant": "acme"}
POLICY = """
identity: header
upstreams:
  openai: {{base_url: "https://api.openai.com/v1"}}
routes:
  - {{model: "*", upstream: openai}}
models:
  gpt-4o-mini: {{input: 0.15, output: 0.60}}
plans:
  ops:
    budgets:
      tenant: {{limit: 5, period: month}}
    action_budgets:
      tenant: {{limit: 500, period: month}}
tenants:
  acme: {{plan: ops}}
reservations: {{on_expiry: {on_expiry}}}
"""


@asynccontextmanager
async def replica(ledger: Store, url: str, owner: str) -> AsyncIterator[Store]:
    """Another replica, `owner`, on `ledger`'s store: what it reserves is its own, and its
    heartbeat says it is alive. On Redis a ledger of its own; memory:// lives in one process, so
    `ledger` itself acts under that name until the block ends."""
    if isinstance(ledger, MemoryLedger):
        mine, ledger.owner = ledger.owner, owner
        try:
            yield ledger
        finally:
            ledger.owner = mine
        return
    other = RedisLedger(url, ledger.settings, owner)
    try:
        yield other
    finally:
        await other.close()


async def tenant_usd(ledger: Store, tenant: str = "acme") -> tuple[int, int]:
    """(spent, reserved) of the tenant's tenant-level USD line (it may have a workflow line)."""
    rows = await ledger.balances(tenant)
    (row,) = [r for r in rows if r.level == "tenant" and r.unit == "USD"]
    return row.spent, row.reserved


async def forget(store: Store, url: str, tenant: str, rid: str) -> None:
    """Drop a reservation's record as the store does when its tombstone expires (or as a store
    that lost it would have it): the ledger's sums stay as they are."""
    if isinstance(store, MemoryLedger):
        t = store._tenants[tenant]
        del t.resv[rid]
        t.resv_exp.pop(rid, None)
        return
    _, _, resv, resv_exp, *_ = layout.tenant_keys(tenant)
    client = open_client(url, decode_responses=True)
    await client.hdel(resv, rid, f"{rid}|scope")
    await client.zrem(resv_exp, rid)
    await client.aclose()


def hooked(url: str, settings: ReservationSettings, hooks: list[Hook]) -> Store:
    """The store for `url` (`memory://` or Redis), whose next reservation lookup runs `hooks`
    (once each) after it has read the record: what happens between an action settle's check
    and its script."""
    kind: Any = MemoryLedger if url == "memory://" else RedisLedger

    class Hooked(kind):  # type: ignore[misc,valid-type]
        async def reservation(self, tenant: str, rid: str) -> ReservationRecord | None:
            record = await super().reservation(tenant, rid)
            while hooks:
                await hooks.pop(0)()
            return cast(ReservationRecord | None, record)

    store = Hooked(settings, "me") if kind is MemoryLedger else Hooked(url, settings, "me")
    return cast(Store, store)


def actions_policy(tmp_path: Path, on_expiry: str = "charge") -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(on_expiry=on_expiry))
    return load_policy(path)


@asynccontextmanager
async def actions(url: str, policy: Policy, ledger: Store) -> AsyncIterator[Stack]:
    """The proxy on `ledger`, without a sweeper of its own (tests sweep when they mean to);
    `ledger` is closed after."""
    try:
        async with local_stack(policy, store=url, ledger=ledger, sweep_every=None) as stack:
            yield stack
    finally:
        await ledger.close()


async def post(stack: Stack, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as http,
        http.post(stack.url + RESERVATIONS + path, data=data, headers=ACME) as answer,
    ):
        return answer.status, orjson.loads(await answer.read())


async def points(store: Store) -> tuple[int, int]:
    """(spent, reserved) of acme's RISK_POINTS line."""
    (row,) = [r for r in await store.balances("acme") if r.unit == "RISK_POINTS"]
    return row.spent, row.reserved
