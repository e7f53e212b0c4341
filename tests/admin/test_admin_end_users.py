"""A tenant's end users on the admin API and the dashboard (issue 18): the top spenders of the
period, most first and bounded; one user's lines by the id its clients send (hashed first under
`user_ids: hash`); credits to one user; /balances leaves them out."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from admin_support import ADMIN, Admin, admin_stack
from boundary_support import with_top_level
from ledger_support import every_row
from support import chat, eventually

from proxy.__main__ import command_line
from proxy.admin.dashboard import session
from proxy.cli import admin as cli
from proxy.policy.runtime import Policy
from proxy.store.ledger.base import BalanceRow, Ledger
from proxy.testing.local import Stack

SECRET = "another-secret-for-the-admin-tests"
BUDGETS = "tenant: {limit: 50, period: month}\nuser: {limit: 1, period: day}"
T = "/admin/v1/tenants/alpha"


def hashing(tmp_path: Path, ids: str) -> Policy:
    return with_top_level(tmp_path, BUDGETS, f"identity: header\nuser_ids: {ids}\n")


def parse(command: list[str]) -> Any:
    return command_line().parse_args(command)


def kept(user: str) -> str:
    message = f"alpha\n{user.lower()}".encode()
    return hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()[:32]


async def spend(stack: Stack, user: str, calls: int, header: bool = True) -> None:
    named = {"X-Cycles-User": user} if header else {}
    body = chat() if header else chat(user=user)
    async with aiohttp.ClientSession() as http:
        for _ in range(calls):
            headers = {"X-Cycles-Tenant": "alpha", **named}
            async with http.post(
                stack.url + "/v1/chat/completions", json=body, headers=headers
            ) as r:
                assert r.status == 200, await r.text()


async def user_rows(ledger: Ledger) -> dict[str, BalanceRow]:
    async def settled() -> dict[str, BalanceRow] | None:
        rows = {r.value: r for r in await every_row(ledger, "alpha") if r.level == "user"}
        return None if any(r.reserved for r in rows.values()) else rows

    return await eventually(settled, "alpha's end users settling")


async def get(admin: Admin, path: str) -> tuple[int, Any]:
    return await admin.call("GET", path)


async def test_the_top_end_users_most_spent_first_and_balances_leave_them_out(
    tmp_path: Path, store_url: str
) -> None:
    async with admin_stack(hashing(tmp_path, "plain"), store_url) as (stack, admin):
        for user, calls in (("u1", 3), ("u2", 1), ("u3", 2)):
            await spend(stack, user, calls)
        rows = await user_rows(stack.ledger)
        status, top = await get(admin, f"{T}/users?limit=2")
        assert status == 200 and (top["user_ids"], top["limit"]) == ("plain", 2)
        assert [(r["value"], r["spent"]["units"]) for r in top["data"]] == [
            ("u1", rows["u1"].spent),
            ("u3", rows["u3"].spent),
        ]
        first = top["data"][0]
        assert (first["level"], first["period"], first["limit"]["units"]) == (
            "user",
            rows["u1"].period_id,
            10**8,
        )
        assert first["remaining"]["units"] == 10**8 - rows["u1"].spent
        assert len((await get(admin, f"{T}/users"))[1]["data"]) == 3
        status, bad = await get(admin, f"{T}/users?limit=many")
        assert (status, bad["error"]["param"]) == (400, "limit")
        _, balances = await get(admin, f"{T}/balances")
        assert {r["level"] for r in balances["data"]} == {"tenant"}


async def test_a_reset_of_level_user_names_one_user(tmp_path: Path, store_url: str) -> None:
    """End users are reset one at a time (the ledger reads that user's fields only); a reset
    without a level resets the tenant's own scopes and leaves every end user alone."""
    async with admin_stack(hashing(tmp_path, "plain"), store_url) as (stack, admin):
        for user in ("u1", "u2"):
            await spend(stack, user, 1)
        before = await user_rows(stack.ledger)
        everyone = {"level": "user", "reason": "start over"}
        status, refused = await admin.call("POST", f"{T}/reset", everyone)
        assert (status, refused["error"]["param"]) == (400, "value"), refused
        assert "one at a time" in refused["error"]["message"]
        status, reset = await admin.call("POST", f"{T}/reset", {"reason": "new month"})
        assert status == 200 and {r["level"] for r in reset["data"]} == {"tenant"}
        one = {"level": "user", "value": "U1", "reason": "goodwill"}
        status, reset = await admin.call("POST", f"{T}/reset", one)
        assert status == 200 and [r["value"] for r in reset["data"]] == ["u1"]
        after = await user_rows(stack.ledger)
        assert (after["u1"].spent, after["u2"].spent) == (0, before["u2"].spent) != (0, 0)


@pytest.mark.parametrize("ids", ["plain", "hash"])
async def test_one_users_lines_by_the_id_its_clients_send(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch, ids: str
) -> None:
    monkeypatch.setenv("CYCLES_USER_ID_SECRET", SECRET)
    sent = "Alice.Smith" if ids == "plain" else "Alice@Example.com"
    async with admin_stack(hashing(tmp_path, ids), store_url) as (stack, admin):
        await spend(stack, sent, 2, header=False)
        value = sent.lower() if ids == "plain" else kept(sent)
        row = (await user_rows(stack.ledger))[value]
        status, one = await get(admin, f"{T}/users/{sent}")
        assert status == 200 and one["user"] == value
        command = ["admin", "users", "alpha", "--user", sent]
        assert await cli.call(admin.url, ADMIN, *cli.request_for(parse(command))) == (200, one)
        [line] = one["data"]
        assert (line["value"], line["spent"]["units"], line["period"]) == (
            value,
            row.spent,
            row.period_id,
        )
        _, nobody = await get(admin, f"{T}/users/nobody")
        assert [(r["spent"]["units"], r["remaining"]["units"]) for r in nobody["data"]] == [
            (0, 10**8)
        ]
        adjustment = {"level": "user", "value": sent, "amount": "0.5", "reason": "goodwill"}
        status, credited = await admin.call("POST", f"{T}/adjustments", adjustment)
        assert status == 200 and credited["value"] == value
        assert (await user_rows(stack.ledger))[value].credit == 5 * 10**7
        if ids == "plain":
            status, bad = await get(admin, f"{T}/users/a@b.c")
            assert (status, bad["error"]["code"]) == (400, "invalid_user")


async def test_the_tenant_page_lists_its_top_end_users(tmp_path: Path) -> None:
    async with admin_stack(hashing(tmp_path, "plain"), "memory://") as (stack, admin):
        await spend(stack, "u1", 2)
        await spend(stack, "u2", 1)
        rows = await user_rows(stack.ledger)
        headers = {"Origin": admin.url}
        async with admin.session.post(
            admin.url + "/dashboard/login",
            data={"token": ADMIN},
            headers=headers,
            allow_redirects=False,
        ) as r:
            cookie = r.cookies[session.COOKIE].value
        page_headers = {"Cookie": f"{session.COOKIE}={cookie}"}
        async with admin.session.get(
            admin.url + "/dashboard/tenants/alpha", headers=page_headers
        ) as r:
            page = await r.text()
        top = page.split("<h2>Top end users</h2>", 1)[1].split("<h2>", 1)[0]
        pid = rows["u1"].period_id
        assert top.index(f'data-line="user|u1|USD|{pid}"') < top.index(
            f'data-line="user|u2|USD|{pid}"'
        )
        budgets = page.split("<h2>Budgets</h2>", 1)[1].split("<h2>", 1)[0]
        assert "user|" not in budgets
