# The ledger fixture is imported from ledger_support (on conftest's `opener`: every store);
# tests take it as an argument, which pyflakes reads as redefining the import.
# ruff: noqa: F811
"""End users (issue 18) in the ledger, on every store: a user's line is reserved atomically with
the tenant's (200 concurrent first calls of a new user against a budget that fits 5 admit exactly
5), users of two tenants that share an id are apart, a user's request rate is its own, a user's
lines raise no alerts, and the top spenders are read a batch at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import EVERY_STORE
from hooks_support import quota_counters
from ledger_support import ask, book, ledger, line  # noqa: F401

from proxy.store.ledger import RedisLedger, spenders
from proxy.store.ledger.base import Candidate, Ledger, Quotas, ReserveRequest

pytestmark = EVERY_STORE

AMOUNT = 1_234_567


async def test_200_concurrent_first_calls_of_a_new_user_admit_exactly_the_5_that_fit(
    ledger: Ledger,
) -> None:
    lines = [line(limit=10**12), line("user", "new-user", limit=5 * AMOUNT, period="day")]
    results = await asyncio.gather(
        *(ledger.reserve(ask(f"r{i}", lines, {"USD": AMOUNT})) for i in range(200))
    )
    assert sum(r.allowed for r in results) == 5
    assert {r.denied_by for r in results if not r.allowed} == {1}
    assert await book(ledger) == {
        "tenant|acme|USD": (0, 5 * AMOUNT),
        "user|new-user|USD": (0, 5 * AMOUNT),
    }


async def test_users_of_two_tenants_that_share_an_id_have_budgets_of_their_own(
    ledger: Ledger,
) -> None:
    def user_lines(tenant: str) -> list:  # type: ignore[type-arg]
        return [line(value=tenant, limit=10**9), line("user", "u1", limit=300, period="day")]

    spent = await ledger.reserve(ask("a1", user_lines("acme"), {"USD": 300}))
    assert spent.reservation is not None
    await ledger.commit(spent.reservation, {"USD": 300})
    assert not (await ledger.reserve(ask("a2", user_lines("acme"), {"USD": 1}))).allowed
    other = await ledger.reserve(ask("g1", user_lines("globex"), {"USD": 300}, tenant="globex"))
    assert other.allowed and other.lines[1].remaining == 0
    assert await book(ledger, "acme") == {"tenant|acme|USD": (300, 0), "user|u1|USD": (300, 0)}
    assert await book(ledger, "globex") == {"tenant|globex|USD": (0, 300), "user|u1|USD": (0, 300)}


async def test_each_user_has_its_own_request_rate(ledger: Ledger) -> None:
    def rated(rid: str, user: str) -> ReserveRequest:
        lines = [line(limit=10**9), line("user", user, limit=10**9, period="day")]
        return ask(rid, lines, {"USD": 1}, quotas=Quotas(rates=[("user", user, 2)]))

    assert [(await ledger.reserve(rated(f"a{i}", "u1"))).allowed for i in range(2)] == [True] * 2
    third = await ledger.reserve(rated("a3", "u1"))
    assert (third.allowed, third.quota) == (False, "requests_per_minute user")
    assert 0 < third.retry_after_ms <= 30_000
    assert (await ledger.reserve(rated("b1", "u2"))).allowed
    counters = await quota_counters(ledger, "acme")
    assert set(counters) == {"q|rpm|user|u1|tat", "q|rpm|user|u2|tat"}
    assert await book(ledger) == {
        "tenant|acme|USD": (0, 3),
        "user|u1|USD": (0, 2),
        "user|u2|USD": (0, 1),
    }


async def test_a_users_rate_that_would_deny_in_shadow_is_not_advanced(ledger: Ledger) -> None:
    quotas = Quotas(rates=[("user", "u1", 1)])
    lines = [line(limit=10**9)]
    first = await ledger.reserve(ask("a1", lines, {"USD": 1}, quotas=quotas, shadow=True))
    before = await quota_counters(ledger, "acme")
    second = await ledger.reserve(ask("a2", lines, {"USD": 1}, quotas=quotas, shadow=True))
    assert (first.would_allow, second.would_allow, second.allowed) == (True, False, True)
    assert second.quota == "requests_per_minute user"
    assert await quota_counters(ledger, "acme") == before


async def test_a_users_lines_raise_no_alerts_while_the_tenants_do(ledger: Ledger) -> None:
    lines = [line(limit=1000), line("user", "u1", limit=100, period="day")]
    request = ReserveRequest("acme", "a", lines, [Candidate({"USD": 100})], alerts=(5000,))
    held = (await ledger.reserve(request)).reservation
    assert held is not None
    settled = await ledger.commit(held, {"USD": 600})
    assert [c.field.split("|")[0] for c in settled.crossed] == ["tenant"]
    denied = await ledger.reserve(ReserveRequest("acme", "b", lines, [Candidate({"USD": 1})]))
    assert (denied.allowed, denied.denied_by, denied.first_deny) == (False, 1, None)
    assert not any("|user|" in name for name in await quota_counters(ledger, "acme"))


async def test_the_top_spenders_of_a_level_most_first_in_one_unit_and_period(
    ledger: Ledger,
) -> None:
    spends = {"u1": 50, "u2": 700, "u3": 300, "u4": 300, "u5": 10}
    for user, usd in spends.items():
        lines = [line(limit=10**9), line("user", user, limit=10**9, period="day")]
        lines.append(line("user", user, limit=10**9, unit="TOKENS", period="day"))
        amounts = {"USD": usd, "TOKENS": 10**6}
        result = await ledger.reserve(ask(f"r-{user}", lines, amounts))
        assert result.reservation is not None
        await ledger.commit(result.reservation, amounts)
    pid = result.lines[1].period_id
    top = await ledger.top_spenders("acme", "user", "USD", pid, 3)
    assert [(r.value, r.spent, r.reserved, r.period_id) for r in top] == [
        ("u2", 700, 0, pid),
        ("u3", 300, 0, pid),
        ("u4", 300, 0, pid),
    ]
    assert await ledger.top_spenders("acme", "user", "USD", "d19990101", 3) == []
    assert await ledger.top_spenders("globex", "user", "USD", pid, 3) == []
    assert len(await ledger.top_spenders("acme", "user", "USD", pid, 100)) == 5


async def test_a_line_the_walk_meets_twice_is_listed_once(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HSCAN may return a field more than once (SCAN's contract: the hash resized between two
    pages, as when the sweeper drops idle users meanwhile); memory:// is made to offer each
    batch twice. A user is still listed once, and does not push another out."""
    spends = {"big": 900, "second": 800, "third": 700}
    for user, usd in spends.items():
        lines = [line(limit=10**9), line("user", user, limit=10**9, period="day")]
        result = await ledger.reserve(ask(f"r-{user}", lines, {"USD": usd}))
        assert result.reservation is not None
        await ledger.commit(result.reservation, {"USD": usd})
    pid = result.lines[1].period_id
    if isinstance(ledger, RedisLedger):
        client: Any = ledger.scripts.client
        real = client.hscan

        async def again(name: str, cursor: int = 0, **kw: Any) -> Any:
            """Every page, then the whole hash once more, as a resize may make HSCAN do."""
            if cursor == -1:
                return 0, (await real(name, 0, **kw))[1]
            nxt, page = await real(name, cursor, **kw)
            return (-1 if nxt == 0 else nxt), page

        monkeypatch.setattr(client, "hscan", again)
    else:
        offer = spenders.Best.add
        monkeypatch.setattr(spenders.Best, "add", lambda best, fields: offer(best, [*fields] * 2))
    top = await ledger.top_spenders("acme", "user", "USD", pid, 3)
    assert [(r.value, r.spent) for r in top] == [("big", 900), ("second", 800), ("third", 700)]
