"""A reset of one end user zeroes its lines in the operator's units too (issue 20): a user's
fields are found by name, so the reset is told the policy's units (`units=`), on both stores."""

from __future__ import annotations

import pytest
from conftest import EVERY_STORE, Opener
from ledger_support import ask, every_row, line

from proxy.store.open import Stores
from proxy.store.tenants import TenantRecord

pytestmark = EVERY_STORE


@pytest.fixture
async def mailer(opener: Opener) -> Stores:
    """acme's end user u1 sent 3 EMAILS and spent 2 USD units; u2 sent 4 EMAILS."""
    store = opener.open()
    await store.tenants.create_tenant(TenantRecord("acme", "pro"), actor="test")
    for rid, user, amounts in (("r1", "u1", {"EMAILS": 3}), ("r2", "u2", {"EMAILS": 4})):
        lines = [line("user", user, limit=100, unit="EMAILS", period="day")]
        held = (await store.ledger.reserve(ask(rid, lines, amounts))).reservation
        assert held is not None
        await store.ledger.commit(held, amounts)
    usd = [line("user", "u1", limit=100, period="day")]
    held = (await store.ledger.reserve(ask("r3", usd, {"USD": 2}))).reservation
    assert held is not None
    await store.ledger.commit(held, {"USD": 2})
    return store


async def spent(store: Stores) -> dict[tuple[str, str], int]:
    rows = await every_row(store.ledger)
    return {(r.value, r.unit): r.spent for r in rows if r.level == "user"}


async def test_a_user_reset_zeroes_that_users_lines_in_the_policys_units(mailer: Stores) -> None:
    rows = await mailer.tenants.reset(
        "acme", level="user", value="u1", actor="t", reason="x", units=("EMAILS", "PAGES")
    )
    assert sorted((r.unit, r.spent) for r in rows) == [("EMAILS", 0), ("USD", 0)]
    assert await spent(mailer) == {("u1", "EMAILS"): 0, ("u1", "USD"): 0, ("u2", "EMAILS"): 4}
    entry = [e for e in await mailer.tenants.audit("acme") if e.kind == "admin"][-1]
    assert entry.fields["action"] == "reset"
    assert "user|u1|EMAILS|" in entry.fields["changes"]


async def test_a_user_reset_told_no_operator_unit_zeroes_only_the_built_in_ones(
    mailer: Stores,
) -> None:
    await mailer.tenants.reset("acme", level="user", value="u1", actor="t", reason="x")
    assert await spent(mailer) == {("u1", "EMAILS"): 3, ("u1", "USD"): 0, ("u2", "EMAILS"): 4}


async def test_a_reset_is_told_units_not_anything_else(mailer: Stores) -> None:
    with pytest.raises(ValueError, match=r"'a\|b' is not a unit"):
        await mailer.tenants.reset(
            "acme", level="user", value="u1", actor="t", reason="x", units=("a|b",)
        )
    assert (await spent(mailer))[("u1", "EMAILS")] == 3
