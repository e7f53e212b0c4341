"""A tool call whose reservation the sweeper charges at its deadline (`on_expiry: charge`: the
proxy died mid-call, or a settle was lost) is charged on the tool's row of the dashboard's Tool
calls table, as in the day's spend chart (the `expire` entry's amounts, EXPIRED_CHARGED)."""

from __future__ import annotations

import asyncio

from conftest import Opener
from ledger_support import line

from proxy.admin.dashboard.scan import History
from proxy.core.types import ReservationSettings
from proxy.store.ledger.base import Candidate, ReserveRequest

EMAILS = line(limit=10, unit="EMAILS", period="day")


async def test_an_expiry_charge_is_booked_to_its_tool(opener: Opener) -> None:
    stores = opener.open(ReservationSettings(cap_ms=1))
    ledger = stores.ledger
    ask = ReserveRequest(
        "acme", "r0", [EMAILS], [Candidate({"EMAILS": 3})], scope="tenant|acme",
        action="mcp:crm/send_email",
    )
    assert (await ledger.reserve(ask)).allowed
    await asyncio.sleep(0.05)
    assert await ledger.sweep_all() >= 1
    entries = await stores.tenants.audit("acme")
    assert any(e.kind == "expire" and e.fields.get("state") == "EXPIRED_CHARGED" for e in entries)
    history = History(0)
    for entry in sorted(entries, key=lambda e: e.id, reverse=True):  # newest first, as the scan
        history.add(entry)
    assert sum(n for (unit, _), n in history.daily.items() if unit == "EMAILS") == 3  # charged
    tally = history.tools.tallies["mcp:crm/send_email"]
    assert tally.charged == {"EMAILS": 3}
