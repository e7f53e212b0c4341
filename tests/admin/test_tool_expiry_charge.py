"""A tool call whose reservation the sweeper charges at its deadline (`on_expiry: charge`: the
proxy died mid-call, or a settle was lost) is charged on the tool's row of the dashboard's Tool
calls table, as in the day's spend chart (the `expire` entry's amounts, EXPIRED_CHARGED)."""

from __future__ import annotations

import asyncio

from conftest import Opener
from ledger_support import line

from proxy.admin.dashboard.scan import History, Tools
from proxy.core.types import ReservationSettings
from proxy.store.ledger.base import Candidate, ReserveRequest
from proxy.store.tenants import AuditEntry

EMAILS = line(limit=10, unit="EMAILS", period="day")


async def test_an_expiry_charge_is_booked_to_its_tool(opener: Opener) -> None:
    stores = opener.open(ReservationSettings(cap_ms=1))
    ledger = stores.ledger
    ask = ReserveRequest(
        "acme",
        "r0",
        [EMAILS],
        [Candidate({"EMAILS": 3})],
        scope="tenant|acme",
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


def test_charges_of_one_reservation_add_up() -> None:
    """An expiry charge and a commit of one reservation (read newest first) both count."""
    tools = Tools()
    res, tool = "r1", "mcp:crm/send_email"
    tools.add(AuditEntry("30-0", 30, "commit", {"reservation": res, "charged": "EMAILS=2"}))
    expired = {"reservation": res, "state": "EXPIRED_CHARGED", "amounts": "EMAILS=3"}
    tools.add(AuditEntry("20-0", 20, "expire", expired))
    released = {"reservation": res, "state": "EXPIRED_RELEASED", "amounts": "EMAILS=5"}
    tools.add(AuditEntry("15-0", 15, "expire", released))
    reserved = {"decision": "ALLOW", "action": tool, "reservation": res}
    tools.add(AuditEntry("10-0", 10, "reserve", reserved))
    assert tools.tallies[tool].charged == {"EMAILS": 5}
