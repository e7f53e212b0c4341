"""The admin API's reset of one end user zeroes that user's lines in the operator's units too
(issue 20): the API tells the store the policy's units, as a user's fields are found by name."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from admin_support import admin_stack
from boundary_support import with_top_level
from ledger_support import every_row

BUDGETS = "tenant: {limit: 50, period: month}"
EMAILS = "    action_budgets:\n      user: {limit: 10, unit: EMAILS, period: day}\n"
T = "/admin/v1/tenants/alpha"


async def send(url: str, user: str, amount: int) -> None:
    headers = {"X-Cycles-Tenant": "alpha", "X-Cycles-User": user}
    body = {"unit": "EMAILS", "amount": amount}
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/v1/cycles/reservations", json=body, headers=headers) as r:
            assert r.status == 201, await r.text()
            rid = (await r.json())["id"]
        async with http.post(f"{url}/v1/cycles/reservations/{rid}/commit", headers=headers) as r:
            assert r.status == 200, await r.text()


async def test_a_user_reset_zeroes_the_users_operator_unit_lines(
    tmp_path: Path, store_url: str
) -> None:
    pol = with_top_level(tmp_path, BUDGETS, "identity: header\n", EMAILS)
    async with admin_stack(pol, store_url) as (stack, admin):
        await send(stack.url, "u1", 3)
        await send(stack.url, "u2", 4)
        one = {"level": "user", "value": "u1", "reason": "goodwill"}
        status, reset = await admin.call("POST", f"{T}/reset", one)
        assert status == 200, reset
        assert [(r["value"], r["unit"]) for r in reset["data"]] == [("u1", "EMAILS")]
        rows = await every_row(stack.ledger, "alpha")
        spent = {r.value: r.spent for r in rows if r.level == "user" and r.unit == "EMAILS"}
        assert spent == {"u1": 0, "u2": 4}
