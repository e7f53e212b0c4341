# ruff: noqa: F811
"""The daily rollups' edges, on every store: huge sums, settles days after their reserve,
spill replays, and a period that ends between a reserve and its settle."""

from __future__ import annotations

from conftest import EVERY_STORE, Opener
from ledger_support import ask, ledger, line  # noqa: F401
from rollups_support import DAY, NOON, at, reserved

from proxy.store.ledger.base import Ledger

BIG = 2**51 + 1  # odd: a sum of five is past 2**53, not exact in a Lua double
MAX = 2**52 - 1  # the largest limit the ledger takes
SAFE = 2**53 - 1


@EVERY_STORE
async def test_a_days_sums_saturate_at_2_53(ledger: Ledger) -> None:
    """Each reserve is within the ledger's range (limits < 2**52), but a day's sums are not:
    both stores saturate them at 2**53 - 1 (a Lua double is exact up to there, and '%d'
    would wrap past 2**63), and the settles that reach it still succeed."""
    await at(ledger, NOON)
    lines = [line(limit=MAX, period="none")]
    for i in range(5):
        await ledger.release(await reserved(ledger, ask(f"h{i}", lines, {"USD": BIG})))
    rows = await ledger.rollups("acme", "2026-03-10", "2026-03-10")
    tenant_row = next(r for r in rows if r.level == "tenant")
    assert (tenant_row.reserved_sum, tenant_row.calls) == (SAFE, 5)


@EVERY_STORE
async def test_a_settle_two_days_after_its_reserve_keeps_the_lines_limit(ledger: Ledger) -> None:
    """A day without a reserve of a line takes its limit from the day the settled call was
    reserved on: reserved on D, committed on D+2 (no rollups on D+1), the D+2 row keeps the
    limit, which the report's `limit` reads."""
    await at(ledger, NOON)
    lines = [line(limit=1000, period="none")]
    r = await reserved(ledger, ask("late", lines, {"USD": 100}))
    await at(ledger, NOON + 2 * DAY)
    await ledger.commit(r, {"USD": 90})
    rows = await ledger.rollups("acme", "2026-03-12", "2026-03-12")
    tenant_row = next(x for x in rows if x.level == "tenant")
    assert tenant_row.spent == 90
    assert tenant_row.limit == 1000, tenant_row


@EVERY_STORE
async def test_a_spill_replay_is_not_counted_as_a_shadow_denial(ledger: Ledger) -> None:
    """gateway/spill.py writes a call served while the store was away as a shadow reserve
    and its commit: past the line's remaining it is neither a shadow denial (nobody could
    have denied it); it is one call, however often the write is repeated."""
    from proxy.gateway.spill import _write

    await at(ledger, NOON)
    lines = [line(limit=1000, period="day")]
    await ledger.commit(await reserved(ledger, ask("a", lines, {"USD": 950})), {"USD": 950})
    for _ in range(2):  # a write repeated after a failure
        await _write(ledger, ask("spilled", lines, {"USD": 100}), {"USD": 100}, None)
    rows = await ledger.rollups("acme", "2026-03-10", "2026-03-10")
    tenant_row = next(r for r in rows if r.level == "tenant")
    assert (tenant_row.spent, tenant_row.calls, tenant_row.shadow_denials) == (1050, 2, 0)
    assert [r.calls for r in rows if r.level == "-"] == [2]


@EVERY_STORE
async def test_a_settle_after_its_period_ended_leaves_the_new_days_peak(ledger: Ledger) -> None:
    """A commit at 00:10 of a call reserved at 23:50 charges the previous day's period: its
    spend is the commit's day's, but that day's value_peak (and so the report's hit) only
    measures the day's own period; a reserve in it then sets the peak as usual."""
    from proxy.reports.figures import hit

    midnight = NOON + 12 * 3600_000  # 2026-03-11T00:00Z
    await at(ledger, midnight - 10 * 60_000)
    lines = [line(limit=100, period="day")]
    r = await reserved(ledger, ask("late-night", lines, {"USD": 100}))
    await at(ledger, midnight + 10 * 60_000)
    await ledger.commit(r, {"USD": 100})
    days = await ledger.rollups("acme", "2026-03-10", "2026-03-11")
    rows = {x.day: x for x in days if x.level == "tenant"}
    new = rows["2026-03-11"]
    assert (new.spent, new.value_peak, hit(new)) == (100, 0, False), new
    await ledger.commit(await reserved(ledger, ask("next", lines, {"USD": 30})), {"USD": 30})
    days = await ledger.rollups("acme", "2026-03-11", "2026-03-11")
    assert [(x.spent, x.value_peak) for x in days if x.level == "tenant"] == [(130, 30)]


@EVERY_STORE
async def test_a_spill_replay_is_no_would_be_denial_in_the_audit(opener: Opener) -> None:
    """The replay's audit entry says what was done (ALLOW), not what enforcing would have
    done: the dashboard counts an entry with `would: DENY` as a shadow denial."""
    from proxy.gateway.spill import _write

    stores = opener.open()
    await at(stores.ledger, NOON)
    lines = [line(limit=100, period="day")]
    await _write(stores.ledger, ask("spilled", lines, {"USD": 500}), {"USD": 500}, None)
    [entry] = [
        e for e in await stores.tenants.audit("acme") if e.fields.get("reservation") == "spilled"
    ][:1]
    assert entry.fields["decision"] == "ALLOW" and "would" not in entry.fields, entry
