"""A key may pin any scope level below the tenant (workspace, app, workflow, agent, toolset, run),
so an operator can issue a key per agent: the pinned level is the key's whatever headers the
caller sends, and a header that disagrees with a pin is 403 with nothing reserved. What else a
pinned key reaches is bounded by its pins too: only action reservations it could have made, and
idempotency keys of its own."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest
from boundary_support import ADMIN, Admin, bearer, call, gateway, with_admin
from ledger_support import every_row
from support import chat, chat_prompt_tokens, line, mini_cost

from proxy.gateway.context import API_KEYS
from proxy.store.api_keys import KeyRecord
from proxy.store.api_keys.records import decode, encode
from proxy.store.ledger.base import BudgetLine, Candidate, ReserveRequest
from proxy.testing.local import Stack

LEVELS = ("workflow", "agent", "toolset", "run")
BUDGETS = """
tenant: {limit: 50, period: month}
workflow: {limit: 10, period: month}
agent: {limit: 10, period: month}
toolset: {limit: 10, period: month}
run: {limit: 10}
"""
HEADER = {level: f"X-Cycles-{level.capitalize()}" for level in LEVELS}
T = "/admin/v1/tenants/alpha"
ACTION_BUDGETS = """
action_budgets:
  tenant: {limit: 1000, period: month}
  agent: {limit: 200, period: month}
"""
RESERVATIONS = "/v1/cycles/reservations"
RISK = "RISK_POINTS"


async def points(stack: Stack) -> dict[str, tuple[int, int]]:
    """`<level>|<value>` → (spent, reserved) of alpha's RISK_POINTS lines."""
    rows = await every_row(stack.ledger, "alpha")
    return {f"{r.level}|{r.value}": (r.spent, r.reserved) for r in rows if r.unit == RISK}


@pytest.mark.parametrize("level", LEVELS)
async def test_a_header_that_disagrees_with_a_pinned_level_is_403_and_reserves_nothing(
    tmp_path: Path, store_url: str, level: str
) -> None:
    async with with_admin(gateway(tmp_path, budgets=BUDGETS), store_url) as (stack, admin):
        status, _, key = await admin.call("POST", f"{T}/keys", {level: "Bot-1"})
        assert status == 201 and key[level] == "bot-1"
        plain = key["key"]
        code, answer = await call(
            stack, "POST", "/v1/chat/completions", bearer(plain, **{HEADER[level]: "other"}), chat()
        )
        assert code == 403 and answer["error"]["type"] == "scope_mismatch"
        assert HEADER[level] in answer["error"]["message"] and "bot-1" in answer["error"]["message"]
        assert await every_row(stack.ledger, "alpha") == [] and stack.fake.calls == 0

        # No header: the key decides; the same value in another case is the same value.
        for headers in (bearer(plain), bearer(plain, **{HEADER[level]: "BOT-1"})):
            code, _ = await call(stack, "POST", "/v1/chat/completions", headers, chat())
            assert code == 200
        pinned = await line(stack.ledger, "alpha", level, "bot-1")
        assert pinned.spent == 2 * mini_cost(chat_prompt_tokens(chat()), 100)


async def test_a_key_per_agent_spends_only_its_agents_budget(
    tmp_path: Path, store_url: str
) -> None:
    """Two agents of one tenant, each with its own key: neither can charge the other's budget,
    while the levels the keys leave open stay the caller's to name."""
    async with with_admin(gateway(tmp_path, budgets=BUDGETS), store_url) as (stack, admin):
        _, _, triage = await admin.call("POST", f"{T}/keys", {"agent": "triage", "app": "desk"})
        _, _, billing = await admin.call("POST", f"{T}/keys", {"agent": "billing"})
        for key in (triage, billing):
            headers = bearer(key["key"], **{"X-Cycles-Workflow": "refunds"})
            assert (await call(stack, "POST", "/v1/chat/completions", headers, chat()))[0] == 200
        spoof = bearer(billing["key"], **{"X-Cycles-Agent": "triage"})
        assert (await call(stack, "POST", "/v1/chat/completions", spoof, chat()))[0] == 403
        one = mini_cost(chat_prompt_tokens(chat()), 100)
        assert (await line(stack.ledger, "alpha", "agent", "triage")).spent == one
        assert (await line(stack.ledger, "alpha", "agent", "billing")).spent == one
        assert (await line(stack.ledger, "alpha", "workflow", "refunds")).spent == 2 * one
        assert (await line(stack.ledger, "alpha", "tenant")).spent == 2 * one


async def test_pins_are_listed_and_survive_rotation(tmp_path: Path, store_url: str) -> None:
    async with with_admin(gateway(tmp_path, budgets=BUDGETS), store_url) as (stack, admin):
        pins = {
            "workspace": "w1",
            "workflow": "triage",
            "agent": "bot",
            "toolset": "t",
            "run": "r-1",
        }
        _, _, created = await admin.call("POST", f"{T}/keys", pins)
        _, _, rotated = await admin.call(
            "POST", f"{T}/keys/{created['id']}/rotate", {"grace_seconds": 0}
        )
        _, _, listed = await admin.call("GET", f"{T}/keys")
        by_id = {k["id"]: k for k in listed["data"]}
        for key in (created, rotated, by_id[created["id"]], by_id[rotated["id"]]):
            assert {level: key[level] for level in pins} == pins
            assert key["app"] is None
        headers = bearer(rotated["key"], **{"X-Cycles-Run": "r-2"})
        assert (await call(stack, "POST", "/v1/chat/completions", headers, chat()))[0] == 403
        assert (await call(stack, "POST", "/v1/chat/completions", bearer(rotated["key"]), chat()))[
            0
        ] == 200
        assert (await line(stack.ledger, "alpha", "run", "r-1")).spent > 0


async def test_an_agents_key_cannot_read_commit_or_release_another_agents_reservation(
    tmp_path: Path, store_url: str
) -> None:
    """A key reaches only the action reservations it could have made itself: another agent's id
    is 404 to read, commit and release, as an unknown id is, and nothing is charged or freed.
    The agent that made it settles it (naming levels its key leaves open, or not), and so may a
    key of the whole tenant that names the agent (the reserving scope's levels must be named)."""
    pol = gateway(tmp_path, budgets=BUDGETS, plan=ACTION_BUDGETS)
    async with with_admin(pol, store_url) as (stack, admin):
        _, _, a = await admin.call("POST", f"{T}/keys", {"agent": "a"})
        _, _, b = await admin.call("POST", f"{T}/keys", {"agent": "b"})
        whole, _ = await stack.app[API_KEYS].create("alpha")
        ask = {"unit": RISK, "amount": 50}
        code, held = await call(stack, "POST", RESERVATIONS, bearer(b["key"]), ask)
        assert code == 201, held
        path = f"{RESERVATIONS}/{held['id']}"
        for method, tail, body in (
            ("GET", "", None),
            ("POST", "/commit", {"amount": 5000}),
            ("POST", "/release", None),
        ):
            code, answer = await call(stack, method, path + tail, bearer(a["key"]), body)
            assert code == 404 and answer["error"]["code"] == "reservation_not_found", answer
        assert await points(stack) == {"tenant|alpha": (0, 50), "agent|b": (0, 50)}

        assert (await call(stack, "GET", path, bearer(whole)))[0] == 404
        code, seen = await call(stack, "GET", path, bearer(whole, **{"X-Cycles-Agent": "b"}))
        assert code == 200 and seen["status"] == "OPEN"
        own = bearer(b["key"], **{"X-Cycles-Workflow": "refunds"})
        code, done = await call(stack, "POST", path + "/commit", own, {"amount": 30})
        assert code == 200 and done["status"] == "COMMITTED", done
        assert await points(stack) == {"tenant|alpha": (30, 0), "agent|b": (30, 0)}


async def test_a_pinned_key_cannot_reach_another_agents_reservation_held_only_by_the_tenant(
    tmp_path: Path, store_url: str
) -> None:
    """When the plan budgets actions on the tenant alone, another agent's reservation holds no
    line of its agent, so only the scope it was reserved with can tell it apart: an agent's key
    still gets 404 on it, as for an unknown id, and nothing is charged or freed."""
    tenant_only = "action_budgets:\n  tenant: {limit: 1000, period: month}\n"
    pol = gateway(tmp_path, budgets=BUDGETS, plan=tenant_only)
    async with with_admin(pol, store_url) as (stack, admin):
        _, _, a = await admin.call("POST", f"{T}/keys", {"agent": "a"})
        _, _, b = await admin.call("POST", f"{T}/keys", {"agent": "b"})
        code, held = await call(
            stack, "POST", RESERVATIONS, bearer(b["key"]), {"unit": RISK, "amount": 50}
        )
        assert code == 201, held
        path = f"{RESERVATIONS}/{held['id']}"
        for method, tail, body in (
            ("GET", "", None),
            ("POST", "/commit", {"amount": 900}),
            ("POST", "/release", None),
        ):
            code, answer = await call(stack, method, path + tail, bearer(a["key"]), body)
            assert code == 404 and answer["error"]["code"] == "reservation_not_found", answer
        assert await points(stack) == {"tenant|alpha": (0, 50)}
        code, done = await call(stack, "POST", path + "/commit", bearer(b["key"]), {"amount": 30})
        assert code == 200 and done["status"] == "COMMITTED", done
        assert await points(stack) == {"tenant|alpha": (30, 0)}


async def test_a_pinned_key_cannot_settle_a_reservation_that_kept_no_scope(
    tmp_path: Path, store_url: str
) -> None:
    """A reservation whose record kept no scope (one the previous release made) fails closed for
    a pinned key; a key of the whole tenant settles it as before."""
    pol = gateway(tmp_path, budgets=BUDGETS, plan=ACTION_BUDGETS)
    async with with_admin(pol, store_url) as (stack, admin):
        _, _, bot = await admin.call("POST", f"{T}/keys", {"agent": "bot"})
        whole, _ = await stack.app[API_KEYS].create("alpha")
        rid = "act_" + "0" * 32
        lines = [BudgetLine("tenant", "alpha", RISK, "month", 1000)]
        made = await stack.ledger.reserve(
            ReserveRequest("alpha", rid, lines, [Candidate({RISK: 50})], scope="tenant=alpha")
        )
        assert made.allowed
        path = f"{RESERVATIONS}/{rid}"
        code, answer = await call(stack, "POST", path + "/release", bearer(bot["key"]))
        assert code == 404 and answer["error"]["code"] == "reservation_not_found"
        assert await points(stack) == {"tenant|alpha": (0, 50)}
        code, done = await call(stack, "POST", path + "/release", bearer(whole))
        assert code == 200 and done["status"] == "RELEASED"
        assert await points(stack) == {"tenant|alpha": (0, 0)}


async def test_pinned_keys_keep_idempotency_keys_of_their_own(
    tmp_path: Path, store_url: str
) -> None:
    """Two agents' keys may send the same Idempotency-Key: neither is refused nor answered from
    the other's record, and each call is charged to its own agent. Keys pinned alike (a key and
    its rotation) share one, so a retry across them is replayed and charged once; a key of the
    whole tenant naming the same agent is another caller, and runs (and pays) again."""
    pol = gateway(tmp_path, budgets=BUDGETS, plan=ACTION_BUDGETS)
    async with with_admin(pol, store_url) as (stack, admin):
        _, _, a = await admin.call("POST", f"{T}/keys", {"agent": "a"})
        _, _, again = await admin.call("POST", f"{T}/keys/{a['id']}/rotate", {"grace_seconds": 60})
        _, _, b = await admin.call("POST", f"{T}/keys", {"agent": "b"})
        whole, _ = await stack.app[API_KEYS].create("alpha")
        retry = {"Idempotency-Key": "job-42.step-1"}
        callers = (
            bearer(a["key"], **retry),
            bearer(b["key"], **retry),
            bearer(again["key"], **retry),
            bearer(whole, **retry, **{"X-Cycles-Agent": "a"}),
        )
        for headers in callers:
            code, answer = await call(stack, "POST", "/v1/chat/completions", headers, chat())
            assert code == 200, answer
        one = mini_cost(chat_prompt_tokens(chat()), 100)
        assert stack.fake.calls == 3
        assert (await line(stack.ledger, "alpha", "agent", "a")).spent == 2 * one
        assert (await line(stack.ledger, "alpha", "agent", "b")).spent == one
        assert (await line(stack.ledger, "alpha", "tenant")).spent == 3 * one

        ask = {"unit": RISK, "amount": 50, "idempotency_key": "refund-7"}
        made = []
        for key in (a["key"], b["key"], again["key"]):
            code, held = await call(stack, "POST", RESERVATIONS, bearer(key), ask)
            assert code == 201, held
            made.append(held["id"])
        assert made[0] == made[2] != made[1]
        assert await points(stack) == {
            "tenant|alpha": (0, 100),
            "agent|a": (0, 50),
            "agent|b": (0, 50),
        }


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"agnet": "bot"}, "'agnet'"),
        ({"tenant": "beta"}, "'tenant'"),
        ({"agent": "no spaces"}, "'agent' must be 1 to 128 characters"),
        ({"run": 7}, "'run' must be 1 to 128 characters"),
        ({"agent": ""}, "'agent' must be 1 to 128 characters"),
    ],
)
async def test_a_key_request_that_cannot_be_meant_is_400_and_creates_nothing(
    tmp_path: Path, body: dict[str, object], complaint: str
) -> None:
    async with with_admin(gateway(tmp_path), "memory://") as (_, admin):
        status, _, answer = await admin.call("POST", f"{T}/keys", body)
        assert status == 400 and complaint in answer["error"]["message"], answer
        assert (await admin.call("GET", f"{T}/keys"))[2]["data"] == []


def test_a_record_without_the_new_pins_is_stored_as_before() -> None:
    """Replicas of the previous release read `sha key_id tenant workspace app state expires
    created prefix`: a key that pins nothing new is written exactly so, and one that does is
    written longer, which such a replica refuses to read rather than ignore its pins."""
    plain = KeyRecord("key_a", "alpha", "w1", None, "active", 0, 5, "abcdef")
    assert encode("sha", plain) == "sha key_a alpha w1 - active 0 5 abcdef"
    assert decode(encode("sha", plain)) == ("sha", plain)
    pinned = KeyRecord("key_b", "alpha", None, None, "active", 0, 5, "abcdef", agent="bot")
    assert decode(encode("sha", pinned)) == ("sha", pinned)
    assert len(encode("sha", pinned).split(" ")) > 9


async def test_the_cli_creates_a_key_per_agent(tmp_path: Path) -> None:
    async with with_admin(gateway(tmp_path), "memory://") as (stack, admin):
        code, out = await _cli(admin, "--json", "keys", "create", "alpha", "--agent", "bot")
        assert code == 0, out
        key = orjson.loads(out)
        assert key["agent"] == "bot" and key["key"].startswith("ck-")
        [record] = await stack.app[API_KEYS].list("alpha")
        assert (record.key_id, record.agent) == (key["id"], "bot")


async def _cli(admin: Admin, *args: str) -> tuple[int, str]:
    env = {**os.environ, "CYCLES_ADMIN_URL": admin.url, "CYCLES_ADMIN_TOKEN": ADMIN}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "admin",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()
