"""A tenant with many end users (issue 18's review): its own reads never walk them. On Redis end
users' entries live in their own hash (`:users`, layout.py), on memory:// in their own dict, so
`balances` and a reset without a level read the tenant's own lines only, and a reset of one end
user reads that user's fields only (whatever the number of users: the bound is proved by what
is read, not by timing)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import EVERY_STORE, Opener
from ledger_support import ask, every_row, line

from proxy.store.ledger import MemoryLedger, RedisLedger, common
from proxy.store.ledger import memory as memory_ledger
from proxy.store.ledger import redis as redis_ledger
from proxy.store.ledger.base import BalanceRow
from proxy.store.open import Stores
from proxy.store.redis import layout
from proxy.store.tenants import TenantRecord

pytestmark = EVERY_STORE

USERS = 300


@pytest.fixture
async def crowd(opener: Opener) -> Stores:
    """acme with USERS end users, each of whom spent 1 (and acme their sum)."""
    store = opener.open()
    await store.tenants.create_tenant(TenantRecord("acme", "pro"), actor="test")
    for i in range(USERS):
        lines = [line(limit=10**9), line("user", f"u{i}", limit=10**6, period="day")]
        held = (await store.ledger.reserve(ask(f"r{i}", lines, {"USD": 1}))).reservation
        assert held is not None
        await store.ledger.commit(held, {"USD": 1})
    return store


def users_spent(rows: list[BalanceRow]) -> dict[str, int]:
    return {r.value: r.spent for r in rows if r.level == "user"}


async def test_balances_read_the_tenants_own_lines_only(
    crowd: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[int] = []

    def counted(entries: Any) -> list[BalanceRow]:
        read.append(len(entries))
        return common.balance_rows(entries)

    monkeypatch.setattr(memory_ledger, "balance_rows", counted)
    monkeypatch.setattr(redis_ledger, "balance_rows", counted)
    rows = await crowd.ledger.balances("acme")
    assert [(r.level, r.spent) for r in rows] == [("tenant", USERS)]
    assert read and max(read) < 10, f"balances read {max(read)} entries for {USERS} users"


async def test_a_reset_without_a_level_leaves_end_users_alone(crowd: Stores) -> None:
    rows = await crowd.tenants.reset("acme", level=None, value=None, actor="t", reason="month")
    assert [(r.level, r.spent) for r in rows] == [("tenant", 0)]
    after = await every_row(crowd.ledger)
    assert users_spent(after) == {f"u{i}": 1 for i in range(USERS)}
    assert [r.spent for r in after if r.level == "tenant"] == [0]


async def test_a_reset_of_one_user_reads_that_users_fields_only(crowd: Stores) -> None:
    async with _reads(crowd) as seen:
        rows = await crowd.tenants.reset("acme", level="user", value="u7", actor="t", reason="x")
    await seen.check()
    assert [(r.level, r.value, r.spent) for r in rows] == [("user", "u7", 0)]
    assert users_spent(await every_row(crowd.ledger)) == {
        f"u{i}": 0 if i == 7 else 1 for i in range(USERS)
    }


DENIED = 50


async def test_denied_end_users_are_counted_beside_their_entries(opener: Opener) -> None:
    """Identical denials within a minute make one audit entry and a counter of the rest: an end
    user's counter is kept with their entries (`:users` on Redis), so that denying many users
    leaves the tenant's `:ledger` as it was, and the audit trail still counts each one's
    denials (and the tenant's own, kept in `:ledger`)."""
    store = opener.open()
    await store.tenants.create_tenant(TenantRecord("acme", "pro"), actor="test")
    assert (await store.ledger.reserve(ask("warm", [line(limit=10**9)], {"USD": 1}))).allowed
    for again in range(3):
        result = await store.ledger.reserve(ask(f"t{again}", [line(limit=1)], {"USD": 5}))
        assert not result.allowed and result.denied_by == 0
    size = await _ledger_fields(store)
    for i in range(DENIED):
        for again in range(2):
            lines = [line(limit=10**9), line("user", f"u{i}", limit=1, period="day")]
            result = await store.ledger.reserve(ask(f"d{i}-{again}", lines, {"USD": 5}))
            assert not result.allowed and result.denied_by == 1
    assert await _ledger_fields(store) == size
    denials = [e.fields for e in await store.tenants.audit("acme") if "agg" in e.fields]
    counts = {f["scope"]: f["count"] for f in denials}
    assert counts == {"tenant|acme": "3", **{f"user|u{i}": "2" for i in range(DENIED)}}


async def _ledger_fields(store: Stores) -> int | None:
    """HLEN of acme's `:ledger` on Redis (None on memory://, which keeps counters apart)."""
    if not isinstance(store.ledger, RedisLedger):
        return None
    return int(await store.ledger.scripts.client.hlen(layout.tenant_keys("acme")[0]))


class _reads:
    """Fails a test if the store walks acme's end users: on memory:// any iteration of their
    dict; on Redis any command that reads more than named fields (HGETALL, HSCAN, HKEYS, …)
    besides the HGETALL of acme's record (`:meta`) that reading the tenant takes."""

    def __init__(self, store: Stores) -> None:
        self.store, self.ledger = store, store.ledger
        self.walked = 0
        self.record_reads: dict[str, int] = {}

    async def __aenter__(self) -> _reads:
        if isinstance(self.ledger, MemoryLedger):
            t = self.ledger.state.tenant("acme")
            t.ledger.users = _Watched(self, t.ledger.users)
        else:
            assert isinstance(self.ledger, RedisLedger)
            self.client: Any = self.ledger.scripts.client
            self.node = self._node()
            await self._reset_stats()
            await self.store.tenants.get_tenant("acme")
            self.record_reads = await self._walks()
            await self._reset_stats()
        return self

    async def _reset_stats(self) -> None:
        kw = {} if self.node is None else {"target_nodes": self.node}
        await self.client.config_resetstat(**kw)

    async def _walks(self) -> dict[str, int]:
        kw = {} if self.node is None else {"target_nodes": self.node}
        stats = dict(await self.client.info("commandstats", **kw))
        walks = ("cmdstat_hgetall", "cmdstat_hscan", "cmdstat_hkeys", "cmdstat_hvals")
        return {name: int(stats[name]["calls"]) for name in walks if name in stats}

    async def __aexit__(self, *exc: object) -> None:
        if isinstance(self.ledger, MemoryLedger):
            t = self.ledger.state.tenant("acme")
            t.ledger.users = dict(t.ledger.users)

    def _node(self) -> Any:
        key = layout.users_key("acme")
        return self.client.get_node_from_key(key) if hasattr(self.client, "nodes_manager") else None

    async def check(self) -> None:
        assert self.walked == 0, f"walked every end user {self.walked} times"
        if isinstance(self.ledger, RedisLedger):
            assert await self._walks() == self.record_reads


class _Watched(dict[str, int]):
    def __init__(self, reads: _reads, data: dict[str, int]) -> None:
        super().__init__(data)
        self.reads = reads

    def __iter__(self) -> Any:
        self.reads.walked += 1
        return super().__iter__()

    def items(self) -> Any:
        self.reads.walked += 1
        return super().items()
