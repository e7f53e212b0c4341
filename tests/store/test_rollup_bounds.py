# ruff: noqa: F811
"""The bounds of the daily rollups: rows per level, the commands they add on Redis, and the
memory store's days past the retention."""

from __future__ import annotations

import pytest
from conftest import EVERY_STORE
from ledger_support import ask, ledger, line  # noqa: F401
from rollups_support import NOON, at, reserved

from proxy.store.ledger import RedisLedger
from proxy.store.ledger.base import Ledger


@EVERY_STORE
async def test_header_values_past_the_bound_are_summed_in_the_star_row(ledger: Ledger) -> None:
    """A plan budget on agent (or workspace, app, workflow, toolset) takes its value from the
    call's header: only the first history.values_per_level (100) values of a day keep their
    own row, the others are summed in the level's `*` row, as runs and end users are."""
    await at(ledger, NOON)
    for i in range(130):
        lines = [line(limit=1000), line("agent", f"a{i:03}", limit=10)]
        await ledger.release(await reserved(ledger, ask(f"g{i}", lines, {"USD": 1})))
    rows = await ledger.rollups("acme", "2026-03-10", "2026-03-10")
    agents = {r.value: r for r in rows if r.level == "agent"}
    assert len(agents) == 101
    assert sorted(agents)[1:] == [f"a{i:03}" for i in range(100)]
    star = agents["*"]
    assert (star.calls, star.reserved_sum, star.value_peak, star.limit) == (30, 30, 0, 10)
    assert [r.calls for r in rows if r.level == "tenant"] == [130]


async def _stats(client) -> dict[str, int]:  # type: ignore[no-untyped-def]
    info = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in info.items()}


@pytest.mark.parametrize("store_url", ["redis"], indirect=True)
async def test_redis_calls_rollups_add_per_reserve_and_commit(ledger: Ledger) -> None:
    """Measures (prints) the commands of one reserve and one commit; the rollups' share is
    the HMGET(+1 HMGET of the day before)/HSET/PEXPIREAT on the day key."""
    assert isinstance(ledger, RedisLedger)
    client = ledger.scripts.client
    await at(ledger, NOON)
    lines = [line(limit=1000), line("workflow", "w", limit=500)]
    await ledger.release(await reserved(ledger, ask("warm", lines, {"USD": 1})))
    before = await _stats(client)
    r = await reserved(ledger, ask("one", lines, {"USD": 1}))
    mid = await _stats(client)
    await ledger.commit(r, {"USD": 1})
    after = await _stats(client)
    names = ("pexpireat", "hmget", "hset")
    res = {n: mid.get(n, 0) - before.get(n, 0) for n in names}
    com = {n: after.get(n, 0) - mid.get(n, 0) for n in names}
    print("reserve", res, "commit", com)
    assert res["pexpireat"] == 1 and com["pexpireat"] == 1


async def test_the_memory_sweeper_purges_an_idle_tenants_days() -> None:
    """A tenant is due for the sweeper when a day of its rollups passes the retention, not only
    when a deadline, a tombstone or an entry does: an idle tenant's days are forgotten as Redis
    expires them."""
    from proxy.core.types import ReservationSettings
    from proxy.store.ledger import MemoryLedger

    DAY = 86_400_000
    clock = [NOON]
    ledger = MemoryLedger(ReservationSettings(history_retention_ms=5 * DAY), clock=lambda: clock[0])
    await ledger.release(
        await reserved(ledger, ask("a", [line(limit=1000, period="none")], {"USD": 1}))
    )
    assert ledger._tenant("acme").days.days
    for step in range(1, 41):  # 20 days, a sweeper pass every 12 hours
        clock[0] = NOON + step * DAY // 2
        await ledger.sweep_all()
    assert await ledger.rollups("acme", "2026-03-01") == []
    assert ledger._tenant("acme").days.days == {}
