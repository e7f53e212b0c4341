"""A key may pin any scope level below the tenant (workspace, app, workflow, agent, toolset, run),
so an operator can issue a key per agent: the pinned level is the key's whatever headers the
caller sends, and a header that disagrees with a pin is 403 with nothing reserved."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest
from boundary_support import ADMIN, Admin, bearer, call, gateway, with_admin
from support import chat, chat_prompt_tokens, line, mini_cost

from proxy.context import RUNTIME
from proxy.keys import KeyRecord
from proxy.keys.records import decode, encode

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
        assert await stack.ledger.balances("alpha") == [] and stack.fake.calls == 0

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
        [record] = await stack.app[RUNTIME].keys.list("alpha")
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
