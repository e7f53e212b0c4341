"""Tenants as runtime state, on every store: records, lifecycle, periods with an anchor and a
time zone, adjustments, and the audit trail. Each test runs on `memory://`, a real Redis and a
real Redis Cluster (conftest.ALL_STORES).

Time travel uses `set_clock_offset`: the offset is computed so the store's clock reads a
chosen instant (Redis TIME and this process's clock are the same machine's)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import EVERY_STORE, Opener
from hooks_support import quota_counters, set_clock_offset, sweep_tenant

from proxy.core.errors import AmountOutOfRange
from proxy.core.types import ReservationSettings
from proxy.store.ledger.base import BudgetLine, Candidate, Condition, ReserveRequest
from proxy.store.ledger.common import wall_clock_ms
from proxy.store.open import Stores, open_store
from proxy.store.tenants import TenantClosed, TenantExists, TenantNotFound, TenantRecord

Store = Stores
MONTHLY = BudgetLine("tenant", "acme", "USD", "month", 1000)
DAILY = BudgetLine("tenant", "acme", "USD", "day", 1000)


@pytest.fixture
def store(opener: Opener) -> Store:
    return opener.open()


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


async def at(store: Store, when: str, tenant: str = "acme") -> None:
    """Make the tenant's scripts see `when` (UTC)."""
    await set_clock_offset(store, tenant, ms(when) - wall_clock_ms())


def ask(
    rid: str,
    *lines: BudgetLine,
    usd: int = 100,
    version: int | None = None,
    offset: int = 0,
    run: str | None = None,
    shadow: bool = False,
    candidates: tuple[Candidate, ...] = (),
) -> ReserveRequest:
    forms = [Candidate({"USD": usd}), *candidates]
    return ReserveRequest(
        "acme",
        rid,
        lines or (MONTHLY,),
        forms,
        shadow=shadow,
        run=run,
        version=version,
        utc_offset_min=offset,
        scope=f"tenant=acme/run={run}" if run else "tenant=acme",
    )


async def create(store: Store, tenant: str = "acme", **kwargs: Any) -> TenantRecord:
    return await store.tenants.create_tenant(TenantRecord(tenant, "pro", **kwargs), actor="ops")


async def kinds(store: Store) -> list[tuple[str, str]]:
    """(kind, decision or action) of every audit entry, oldest first."""
    return [
        (e.kind, e.fields.get("decision") or e.fields.get("action", ""))
        for e in await store.tenants.audit("acme")
    ]


# --- records ---------------------------------------------------------------------------------


@EVERY_STORE
async def test_create_get_and_duplicate(store: Store) -> None:
    created = await create(store, anchor_day=15, timezone="Asia/Tokyo", overrides={"run": 5})
    assert (created.version, created.status, created.anchor_day) == (1, "active", 15)
    assert created.overrides == {"run": 5} and created.created_ms > 0
    assert await store.tenants.get_tenant("acme") == created
    assert await store.tenants.get_tenant("nobody") is None
    with pytest.raises(TenantExists):
        await create(store)
    assert await kinds(store) == [("admin", "create")]


@EVERY_STORE
async def test_a_closed_id_is_never_reused(store: Store) -> None:
    await create(store)
    await store.tenants.change_status("acme", "closed", actor="ops", reason="churned")
    with pytest.raises(TenantExists):
        await create(store)


@EVERY_STORE
async def test_list_tenants_pages_in_id_order(store: Store) -> None:
    for tenant in ("delta", "alpha", "charlie", "bravo", "echo"):
        await create(store, tenant)
    first = await store.tenants.list_tenants(after=None, limit=2)
    assert [r.id for r in first] == ["alpha", "bravo"]
    rest = await store.tenants.list_tenants(after="bravo", limit=10)
    assert [r.id for r in rest] == ["charlie", "delta", "echo"]
    assert await store.tenants.list_tenants(after="echo", limit=10) == []


@EVERY_STORE
async def test_update_changes_fields_bumps_version_and_audits(store: Store) -> None:
    await create(store)
    updated = await store.tenants.update_tenant(
        "acme", actor="ops", reason="upsell", plan="team", mode="shadow", overrides={"tenant": 9}
    )
    assert (updated.plan, updated.mode, updated.overrides, updated.version) == (
        "team",
        "shadow",
        {"tenant": 9},
        2,
    )
    same = await store.tenants.update_tenant("acme", actor="ops", reason="again", plan="team")
    assert same.version == 2
    inherit = await store.tenants.update_tenant("acme", actor="ops", reason="r", mode="inherit")
    assert inherit.mode is None and inherit.version == 3
    admin = [e for e in await store.tenants.audit("acme") if e.fields.get("action") == "update"]
    assert admin[0].fields["actor"] == "ops" and admin[0].fields["reason"] == "upsell"
    assert "plan=pro->team" in admin[0].fields["changes"].split(" ")
    with pytest.raises(TenantNotFound):
        await store.tenants.update_tenant("nobody", actor="ops", reason="r", plan="x")


@EVERY_STORE
async def test_seed_creates_only_missing_tenants(store: Store) -> None:
    await create(store)
    assert (
        await store.tenants.seed([TenantRecord("acme", "free"), TenantRecord("beta", "free")]) == 1
    )
    assert (await store.tenants.get_tenant("acme")).plan == "pro"  # type: ignore[union-attr]
    assert (await store.tenants.get_tenant("beta")).plan == "free"  # type: ignore[union-attr]


# --- version and lifecycle -------------------------------------------------------------------


@EVERY_STORE
async def test_stale_version_reserves_nothing(store: Store) -> None:
    await create(store)
    result = await store.ledger.reserve(ask("a", version=0))
    assert result.stale and not result.allowed and result.reservation is None
    assert await store.ledger.balances("acme") == []
    assert await kinds(store) == [("admin", "create")]
    assert (await store.ledger.reserve(ask("b", version=1))).allowed
    unknown = ReserveRequest("ghost", "c", [MONTHLY], [Candidate({"USD": 1})], version=0)
    assert (await store.ledger.reserve(unknown)).allowed


@EVERY_STORE
async def test_suspend_denies_with_an_audit_entry_and_reactivate_allows(store: Store) -> None:
    await create(store)
    record, changed = await store.tenants.change_status(
        "acme", "suspended", actor="ops", reason="abuse"
    )
    assert changed and record.status == "suspended" and record.version == 2
    denied = await store.ledger.reserve(ask("a", version=2))
    assert not denied.allowed and denied.status == "suspended"
    entry = (await store.tenants.audit("acme", decision="DENY"))[0]
    assert (entry.kind, entry.fields["reason"], entry.fields["reservation"]) == (
        "reserve",
        "tenant_suspended",
        "a",
    )
    again, changed = await store.tenants.change_status("acme", "suspended", actor="ops", reason="x")
    assert not changed and again.version == 2
    await store.tenants.change_status("acme", "active", actor="ops", reason="paid")
    assert (await store.ledger.reserve(ask("b", version=3))).allowed


@EVERY_STORE
async def test_closing_twice_changes_nothing_the_second_time(store: Store) -> None:
    await create(store)
    held = (await store.ledger.reserve(ask("a"))).reservation
    assert held is not None
    _, changed = await store.tenants.change_status("acme", "closed", actor="ops", reason="churn")
    before = (await store.ledger.balances("acme"), await store.tenants.audit("acme"))
    record, changed_again = await store.tenants.change_status(
        "acme", "closed", actor="ops", reason="r"
    )
    assert changed and not changed_again and record.status == "closed"
    assert (await store.ledger.balances("acme"), await store.tenants.audit("acme")) == before


@EVERY_STORE
async def test_closed_tenant_cannot_be_reactivated_or_changed(store: Store) -> None:
    await create(store)
    await store.tenants.change_status("acme", "closed", actor="ops", reason="churn")
    for status in ("active", "suspended"):
        with pytest.raises(TenantClosed):
            await store.tenants.change_status("acme", status, actor="ops", reason="oops")  # type: ignore[arg-type]
    with pytest.raises(TenantClosed):
        await store.tenants.update_tenant("acme", actor="ops", reason="r", plan="x")
    assert (await store.tenants.get_tenant("acme")).status == "closed"  # type: ignore[union-attr]


@EVERY_STORE
@pytest.mark.parametrize("status", ["suspended", "closed"])
async def test_in_flight_reservation_commits_after_status_change(store: Store, status: Any) -> None:
    await create(store)
    held = (await store.ledger.reserve(ask("a", usd=300))).reservation
    assert held is not None
    await store.tenants.change_status("acme", status, actor="ops", reason="r")
    assert (await store.ledger.commit(held, {"USD": 250})).first
    row = (await store.ledger.balances("acme"))[0]
    assert (row.spent, row.reserved) == (250, 0)
    assert (await kinds(store))[-1] == ("commit", "")


@EVERY_STORE
async def test_reserves_racing_a_suspension_are_ordered_around_it(store: Store) -> None:
    await create(store)
    line = BudgetLine("tenant", "acme", "USD", "month", 10**9)
    calls = [store.ledger.reserve(ask(f"r{i}", line, usd=1)) for i in range(100)]
    suspend = store.tenants.change_status("acme", "suspended", actor="ops", reason="race")
    results = await asyncio.gather(*calls[:50], suspend, *calls[50:])
    entries = await store.tenants.audit("acme")
    cut = next(i for i, e in enumerate(entries) if e.fields.get("action") == "status")
    before, after = entries[1:cut], entries[cut + 1 :]
    assert all(e.fields["decision"] == "ALLOW" for e in before)
    assert all(e.fields["reason"] == "tenant_suspended" for e in after)
    allowed = sum(1 for r in results if getattr(r, "allowed", False))
    assert allowed == len(before)
    assert sum(int(e.fields["count"]) for e in after) == 100 - allowed


# --- periods: anchor and time zone -----------------------------------------------------------


@EVERY_STORE
async def test_anchor_15_rolls_the_month_on_the_15th(store: Store) -> None:
    await create(store, anchor_day=15)
    await at(store, "2026-12-14T23:59:00")
    held = (await store.ledger.reserve(ask("a", usd=600))).reservation
    assert held is not None and held.fields == ("tenant|acme|USD|m20261115",)
    await store.ledger.commit(held, {"USD": 600})
    assert (await store.ledger.reserve(ask("b"))).lines[0].remaining == 300
    await at(store, "2026-12-15T00:01:00")
    fresh = await store.ledger.reserve(ask("c"))
    assert (fresh.lines[0].period_id, fresh.lines[0].remaining) == ("m20261215", 900)


@EVERY_STORE
async def test_anchor_31_clamps_to_the_end_of_february(store: Store) -> None:
    await create(store, anchor_day=31)
    await at(store, "2027-02-27T23:59:00")
    assert (await store.ledger.reserve(ask("a"))).lines[0].period_id == "m20270131"
    await at(store, "2027-02-28T00:01:00")
    assert (await store.ledger.reserve(ask("b"))).lines[0].period_id == "m20270228"
    await at(store, "2027-03-31T00:01:00")
    assert (await store.ledger.reserve(ask("c"))).lines[0].period_id == "m20270331"


@EVERY_STORE
async def test_anchor_change_applies_from_the_next_period(store: Store) -> None:
    await create(store)
    await at(store, "2026-11-20T12:00:00")
    updated = await store.tenants.update_tenant(
        "acme", actor="ops", reason="billing", anchor_day=15
    )
    assert updated.anchor_day == 15 and updated.version == 2
    await at(store, "2026-11-25T12:00:00")
    assert (await store.ledger.reserve(ask("a"))).lines[0].period_id == "m20261101"
    await at(store, "2026-12-01T00:01:00")
    assert (await store.ledger.reserve(ask("b"))).lines[0].period_id == "m20261201"
    await at(store, "2026-12-14T23:59:00")
    assert (await store.ledger.reserve(ask("c"))).lines[0].period_id == "m20261201"
    await at(store, "2026-12-15T00:01:00")
    assert (await store.ledger.reserve(ask("d"))).lines[0].period_id == "m20261215"


@EVERY_STORE
async def test_tenant_at_utc_plus_9_rolls_its_day_at_15_utc(store: Store) -> None:
    await create(store, timezone="Asia/Tokyo")
    await at(store, "2026-11-23T14:59:00")
    late = await store.ledger.reserve(ask("a", MONTHLY, DAILY, offset=540))
    assert [s.period_id for s in late.lines] == ["m20261101", "d20261123"]
    await at(store, "2026-11-23T15:01:00")
    early = await store.ledger.reserve(ask("b", MONTHLY, DAILY, offset=540))
    assert [s.period_id for s in early.lines] == ["m20261101", "d20261124"]
    assert early.lines[1].remaining == 900


@EVERY_STORE
async def test_overrides_in_the_store_replace_the_requests_limit(store: Store) -> None:
    await create(store, overrides={"tenant": 150})
    assert (await store.ledger.reserve(ask("a", usd=100))).lines[0].remaining == 50
    assert not (await store.ledger.reserve(ask("b", usd=100))).allowed


# --- adjustments -----------------------------------------------------------------------------


@EVERY_STORE
async def test_adjust_credit_raises_remaining(store: Store) -> None:
    await create(store)
    row = await store.tenants.adjust(
        "acme",
        level="tenant",
        value="acme",
        unit="USD",
        period="month",
        amount=500,
        actor="ops",
        reason="goodwill",
    )
    assert (row.credit, row.spent, row.reserved) == (500, 0, 0)
    assert (await store.ledger.reserve(ask("a", usd=1400))).lines[0].remaining == 100
    entry = (await store.tenants.audit("acme"))[1]
    assert entry.fields["action"] == "adjust" and entry.fields["reason"] == "goodwill"


@EVERY_STORE
async def test_reset_zeroes_spent_and_keeps_reserved(store: Store) -> None:
    await create(store)
    run = BudgetLine("run", "r1", "USD", "none", 1000)
    done = (await store.ledger.reserve(ask("a", MONTHLY, run, usd=300))).reservation
    assert done is not None
    await store.ledger.commit(done, {"USD": 300})
    assert (await store.ledger.reserve(ask("b", MONTHLY, run, usd=200))).allowed
    rows = await store.tenants.reset(
        "acme", level="tenant", value=None, actor="ops", reason="refund"
    )
    assert [(r.level, r.spent, r.reserved) for r in rows] == [("tenant", 0, 200)]
    book = {r.level: (r.spent, r.reserved) for r in await store.ledger.balances("acme")}
    assert book == {"tenant": (0, 200), "run": (300, 200)}
    entry = (await store.tenants.audit("acme"))[-1]
    assert entry.fields["changes"] == f"tenant|acme|USD|{rows[0].period_id}=300"


# --- the audit trail -------------------------------------------------------------------------


@EVERY_STORE
async def test_audit_records_each_decision_and_filters(store: Store) -> None:
    await at(store, "2026-11-23T10:00:00")
    await create(store)
    capped = Candidate({"USD": 15}, Condition("not_fit"), name="degrade[1]")
    line = BudgetLine("tenant", "acme", "USD", "month", 120)
    first = (await store.ledger.reserve(ask("a", line, run="r1"))).reservation
    await at(store, "2026-11-23T10:05:00")
    assert (
        await store.ledger.reserve(ask("b", line, run="r2", candidates=(capped,)))
    ).candidate == 1
    assert not (await store.ledger.reserve(ask("c", line, run="r2"))).allowed
    assert first is not None
    await store.ledger.commit(first, {"USD": 90})
    by_run = await store.tenants.audit("acme", run="r2")
    assert [e.fields["decision"] for e in by_run] == ["ALLOW_WITH_CAPS", "DENY"]
    assert by_run[0].fields["rule"] == "degrade[1]"
    assert by_run[1].fields["reason"] == "budget" and by_run[1].fields["scope"] == "tenant|acme"
    assert by_run[1].fields["path"] == "tenant=acme/run=r2"
    denied = await store.tenants.audit("acme", decision="DENY")
    assert [e.fields["reservation"] for e in denied] == ["c"]
    early = await store.tenants.audit(
        "acme", since_ms=ms("2026-11-23T10:00:00"), until_ms=ms("2026-11-23T10:04:59")
    )
    assert [(e.kind, e.fields.get("reservation")) for e in early] == [
        ("admin", None),
        ("reserve", "a"),
    ]
    late = await store.tenants.audit("acme", since_ms=ms("2026-11-23T10:05:00"), decision="DENY")
    assert [e.fields["reservation"] for e in late] == ["c"]
    last = (await store.tenants.audit("acme"))[-1]
    assert (last.kind, last.fields["actual"], last.fields["from"]) == ("commit", "USD=90", "OPEN")
    second = (await store.tenants.audit("acme", limit=2))[1]
    assert second.at_ms // 60_000 == ms("2026-11-23T10:00:00") // 60_000


@EVERY_STORE
async def test_shadow_records_allow_and_what_enforcement_would_have_done(store: Store) -> None:
    await create(store)
    line = BudgetLine("tenant", "acme", "USD", "month", 50)
    assert (await store.ledger.reserve(ask("a", line, usd=80, shadow=True))).allowed
    entry = (await store.tenants.audit("acme", decision="ALLOW"))[0]
    assert (entry.fields["would"], entry.fields["reason"], entry.fields["scope"]) == (
        "DENY",
        "budget",
        "tenant|acme",
    )


@EVERY_STORE
async def test_identical_denials_in_a_minute_make_one_entry_with_a_count(store: Store) -> None:
    await create(store)
    await at(store, "2026-11-23T10:00:05")
    line = BudgetLine("tenant", "acme", "USD", "month", 10)
    for i in range(50):
        assert not (await store.ledger.reserve(ask(f"d{i}", line))).allowed
    denied = await store.tenants.audit("acme", decision="DENY")
    assert len(denied) == 1 and denied[0].fields["count"] == "50"
    assert denied[0].fields["reservation"] == "d0"
    assert "q|agg|" not in str(await quota_counters(store, "acme"))
    await at(store, "2026-11-23T10:01:05")
    assert not (await store.ledger.reserve(ask("later", line))).allowed
    assert [e.fields["count"] for e in await store.tenants.audit("acme", decision="DENY")] == [
        "50",
        "1",
    ]


@EVERY_STORE
async def test_entries_older_than_the_retention_are_trimmed(store_url: str) -> None:
    short = open_store(store_url, ReservationSettings(audit_retention_ms=60_000))
    try:
        await at(short, "2026-11-23T10:00:00")
        await create(short)
        assert (await short.ledger.reserve(ask("a"))).allowed
        await at(short, "2026-11-23T10:00:59")
        assert (await short.ledger.reserve(ask("b"))).allowed
        assert [e.fields.get("reservation") for e in await short.tenants.audit("acme")][-2:] == [
            "a",
            "b",
        ]
        await at(short, "2026-11-23T10:01:30")
        assert (await short.ledger.reserve(ask("c"))).allowed
        assert [e.fields["reservation"] for e in await short.tenants.audit("acme")] == ["b", "c"]
    finally:
        await short.close()


@EVERY_STORE
async def test_sweeper_records_expired_reservations(store_url: str) -> None:
    expiring = open_store(store_url, ReservationSettings(cap_ms=0))
    try:
        await create(expiring)
        assert (await expiring.ledger.reserve(ask("a"))).allowed
        assert await sweep_tenant(expiring, "acme") == 1
        entry = (await expiring.tenants.audit("acme"))[-1]
        assert (entry.kind, entry.fields["state"], entry.fields["amounts"]) == (
            "expire",
            "EXPIRED_CHARGED",
            "USD=100",
        )
    finally:
        await expiring.close()


@EVERY_STORE
@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"anchor_day": 32}, "anchor_day must be in 1..31"),
        ({"overrides": {"tenant": 2**52}}, "override of tenant"),
        ({"overrides": {"a|b": 1}}, "override level"),
    ],
)
async def test_records_a_store_cannot_keep_are_refused(
    store: Store, fields: dict[str, Any], error: str
) -> None:
    with pytest.raises((ValueError, AmountOutOfRange), match=error):
        await create(store, **fields)
    assert await store.tenants.get_tenant("acme") is None
