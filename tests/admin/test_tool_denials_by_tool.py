"""Each tool's denials on the dashboard's Tool calls table are its own: the ledger aggregates
identical denials within a minute into one audit entry keyed by reason, scope and the action
(lua audit_denial and its memory twin), so denials of two tools on one scope in one minute are
two entries, each with its `count`. Rows rank by calls, so made-up names stay under `other`."""

from __future__ import annotations

from conftest import Opener
from ledger_support import line

from proxy.admin.dashboard.scan import TOOLS, History, Tools
from proxy.store.ledger.base import Candidate, ReserveRequest
from proxy.store.tenants import AuditEntry

EMAILS = line(limit=1, unit="EMAILS", period="day")


def ask(rid: str, action: str | None) -> ReserveRequest:
    return ReserveRequest(
        "acme", rid, [EMAILS], [Candidate({"EMAILS": 1})], scope="tenant|acme", action=action
    )


async def test_each_tools_denials_are_booked_under_that_tool(opener: Opener) -> None:
    stores = opener.open()
    ledger = stores.ledger
    assert (await ledger.reserve(ask("r0", "mcp:crm/send_email"))).allowed
    # The line is spent: one send_email is denied, then three delete_record calls, all in the
    # same minute on the same scope (tenant|acme, reason budget).
    assert not (await ledger.reserve(ask("r1", "mcp:crm/send_email"))).allowed
    for i in range(3):
        assert not (await ledger.reserve(ask(f"r{2 + i}", "mcp:crm/delete_record"))).allowed
    entries = await stores.tenants.audit("acme")
    history = History(0)
    for entry in sorted(entries, key=lambda e: e.id, reverse=True):  # the scan reads newest first
        history.add(entry)
    tallies = {k: (t.reservations, t.denials) for k, t in history.tools.tallies.items()}
    assert tallies == {"mcp:crm/send_email": (1, 1), "mcp:crm/delete_record": (0, 3)}


def test_the_most_called_tools_keep_their_rows() -> None:
    """Made-up tool names (a glob price lets a client invent them), each called once and more
    recently than the real tools, do not push the real ones off the table: rows rank by calls,
    the rest summed under mcp:other."""
    tools = Tools()
    for i in range(TOOLS + 10):  # newest first: the made-up names were called last
        tools.add(AuditEntry(f"{1000 - i}-0", 1000 - i, "reserve", made_up(i)))
    for i in range(3):
        fields = {"decision": "ALLOW", "action": "mcp:crm/send_email", "reservation": f"s{i}"}
        tools.add(AuditEntry(f"{10 - i}-0", 10 - i, "reserve", fields))
    shown = tools.shown()
    assert len(shown) == TOOLS + 1
    assert shown["mcp:crm/send_email"].reservations == 3
    assert shown["mcp:other"].reservations == 11  # 60 made up: 49 shown, 11 summed
    assert sum(t.reservations for t in shown.values()) == TOOLS + 13


def made_up(i: int) -> dict[str, str]:
    return {"decision": "ALLOW", "action": f"mcp:crm/x{i:03}", "reservation": f"x{i}"}
