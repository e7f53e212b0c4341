"""What a reservation was for (ReserveRequest.action: an action's name, `mcp:<server>/<tool>`) is
the `action` field of its reserve audit entry, written the same by every store (memory://, a
real Redis, a real Redis Cluster); a reserve for nothing named (an LLM call) has none."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import EVERY_STORE, Opener

from proxy.store.ledger.base import BudgetLine, Candidate, ReserveRequest
from proxy.store.open import Stores
from proxy.store.tenants import TenantRecord

pytestmark = EVERY_STORE

EMAILS = BudgetLine("tenant", "acme", "EMAILS", "day", 2)
TOOL = "mcp:crm/send_email"


@pytest.fixture
async def store(opener: Opener) -> Stores:
    stores = opener.open()
    await stores.tenants.create_tenant(TenantRecord("acme", "pro"), actor="ops")
    return stores


def ask(
    rid: str, action: str | None = TOOL, *, run: str | None = None, **kw: bool
) -> ReserveRequest:
    return ReserveRequest(
        "acme",
        rid,
        [EMAILS],
        [Candidate({"EMAILS": 1})],
        run=run,
        scope="tenant=acme",
        action=action,
        **kw,
    )


async def reserves(store: Stores) -> list[dict[str, str]]:
    """The fields of the tenant's reserve entries, as the admin audit read gives them."""
    return [e.fields for e in await store.tenants.audit("acme") if e.kind == "reserve"]


async def test_a_reserve_for_a_tool_names_it_in_its_audit_entry(store: Stores) -> None:
    assert (await store.ledger.reserve(ask("a", run="r1"))).allowed
    assert await reserves(store) == [
        {
            "decision": "ALLOW",
            "reservation": "a",
            "path": "tenant=acme",
            "amounts": "EMAILS=1",
            "run": "r1",
            "action": TOOL,
        }
    ]


async def test_a_reserve_for_nothing_named_has_no_action_field(store: Stores) -> None:
    assert (await store.ledger.reserve(ask("a", None))).allowed
    assert await reserves(store) == [
        {"decision": "ALLOW", "reservation": "a", "path": "tenant=acme", "amounts": "EMAILS=1"}
    ]


async def test_a_denied_or_shadow_reserve_names_its_action_too(store: Stores) -> None:
    for rid in ("a", "b"):
        assert (await store.ledger.reserve(ask(rid, "send_email"))).allowed
    assert not (await store.ledger.reserve(ask("c"))).allowed
    assert (await store.ledger.reserve(ask("d", shadow=True))).allowed
    entries = await reserves(store)
    assert [(e["decision"], e["action"]) for e in entries] == [
        ("ALLOW", "send_email"),
        ("ALLOW", "send_email"),
        ("DENY", TOOL),
        ("ALLOW", TOOL),
    ]
    assert (entries[2]["reason"], entries[3]["would"]) == ("budget", "DENY")


@pytest.mark.parametrize("action", ["", "send email", "mcp:crm/a|b", "x" * 301])
async def test_an_action_the_audit_cannot_name_is_refused_and_nothing_is_written(
    store: Stores, action: str
) -> None:
    with pytest.raises(ValueError, match=r"action .* must match"):
        await store.ledger.reserve(ask("a", action))
    assert await reserves(store) == []
    assert await store.ledger.balances("acme") == []


async def test_denials_fold_by_their_group_not_the_name_the_client_made_up(
    store: Stores,
) -> None:
    """A tool call's denials group by its price key (ReserveRequest.group): made-up names
    matching one glob are one entry a minute, its count all of them; the entry names the
    first tool denied. Without a group they group by action, as before."""
    for rid in ("a", "b"):
        assert (await store.ledger.reserve(ask(rid))).allowed
    glob = "mcp:crm/delete_*"
    for i in range(5):
        made = dataclasses.replace(ask(f"g{i}", f"mcp:crm/delete_{i}"), group=glob)
        assert not (await store.ledger.reserve(made)).allowed
    for i in range(2):
        assert not (await store.ledger.reserve(ask(f"n{i}", f"mcp:crm/other_{i}"))).allowed
    denied = await store.tenants.audit("acme", decision="DENY")
    named = sorted((e.fields["action"], int(e.fields.get("count", "1"))) for e in denied)
    assert named == [("mcp:crm/delete_0", 5), ("mcp:crm/other_0", 1), ("mcp:crm/other_1", 1)]
