"""The limit report route's edges: its numbers are ASCII digits only, and its CSV cells are
never read as formulas by a spreadsheet."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import pytest
from reports_support import LIMITS, admin, get

from proxy.store.ledger.base import BudgetLine, Candidate, ReserveRequest
from proxy.store.tenants import TenantRecord

USD = 10**8


async def test_limit_with_a_unicode_digit_is_a_400_not_a_500(tmp_path: Path) -> None:
    async with admin(tmp_path, "memory://") as (url, _stack, client):
        got, answer = await get(client, f"{url}{LIMITS}?limit=%C2%B2")  # '²'.isdigit() is True
        assert got == 400, answer


@pytest.mark.parametrize("query", ["limit=%D9%A3", "since=%C2%B2d", "since=%D9%A3d"])
async def test_numbers_in_other_scripts_are_refused(tmp_path: Path, query: str) -> None:
    """'٣' (Arabic-Indic three) and '²' are digits to `str.isdigit`, and `int` takes the first:
    a report's numbers are ASCII digits only."""
    async with admin(tmp_path, "memory://") as (url, _stack, client):
        got, answer = await get(client, f"{url}{LIMITS}?{query}")
        assert got == 400, answer
        assert answer["error"]["param"] == query.split("=")[0], answer


async def test_csv_cells_are_not_formulas(tmp_path: Path) -> None:
    async with admin(tmp_path, "memory://") as (url, stack, client):
        tenant = "-1-1"
        await stack.stores.tenants.create_tenant(TenantRecord(tenant, "t"), actor="test")
        line = BudgetLine("tenant", tenant, "USD", "day", 10 * USD)
        req = ReserveRequest(tenant, uuid.uuid4().hex, [line], [Candidate({"USD": USD})])
        res = await stack.stores.ledger.reserve(req)
        assert res.reservation is not None
        await stack.stores.ledger.commit(res.reservation, {"USD": USD})
        got, text = await get(client, f"{url}{LIMITS}?format=csv&tenant={tenant}")
        assert got == 200, text
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows
        assert (rows[0]["tenant"], rows[0]["value"], rows[0]["limit"]) == (
            "'-1-1",
            "'-1-1",
            "10.000000 USD",
        )
        for r in rows:
            for cell in r.values():
                assert cell[:1] not in ("=", "+", "-", "@"), (cell, r)
