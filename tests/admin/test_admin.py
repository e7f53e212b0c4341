"""The admin API: onboarding to spend, lifecycle with calls in flight, auth, idempotency."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
from admin_support import ADMIN, READER, stacks
from support import chat, chat_prompt_tokens, eventually, mini_cost, policy

from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

BUDGET = "tenant: {limit: 50, period: month}"


async def test_onboarding_to_spend_and_a_retried_onboarding_creates_nothing(
    tmp_path: Path, store_url: str
) -> None:
    pol = dataclasses.replace(policy(tmp_path, BUDGET), identity="api_key")
    async with stacks(pol, store_url) as (stack, admin):
        onboard = {"id": "customer-47", "plan": "test"}
        status, created = await admin.call("POST", "/admin/v1/tenants", onboard, key="onboard-47")
        assert status == 201, created
        status, again = await admin.call("POST", "/admin/v1/tenants", onboard, key="onboard-47")
        assert status == 201 and again["tenant"] == created["tenant"]
        assert again["api_key"]["id"] == created["api_key"]["id"]
        assert again["api_key"]["key"] is None  # shown once (tests/admin/test_admin_secrets.py)
        _, listed = await admin.call("GET", "/admin/v1/tenants")
        assert [t["id"] for t in listed["data"]].count("customer-47") == 1
        _, keys = await admin.call("GET", "/admin/v1/tenants/customer-47/keys")
        assert len(keys["data"]) == 1

        key = created["api_key"]["key"]
        async with openai.AsyncOpenAI(base_url=stack.url + "/v1", api_key=key) as client:
            await client.chat.completions.create(**chat())
        expected = mini_cost(chat_prompt_tokens(chat()), 100)
        _, balances = await admin.call("GET", "/admin/v1/tenants/customer-47/balances")
        [line] = [b for b in balances["data"] if b["level"] == "tenant"]
        assert line["spent"]["units"] == expected
        assert line["limit"]["units"] == 50 * 10**8
        assert line["remaining"]["units"] == 50 * 10**8 - expected
        _, audit = await admin.call("GET", "/admin/v1/tenants/customer-47/audit")
        kinds = [e["kind"] for e in audit["data"]]
        assert kinds[0] == "admin" and "reserve" in kinds and "commit" in kinds


async def test_suspend_with_streams_in_flight_then_close_twice(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(chunks=10, chunk_delay=0.05))
    pol = policy(tmp_path, BUDGET)
    async with stacks(pol, store_url, fake) as (stack, admin), aiohttp.ClientSession() as session:
        url = f"{stack.url}/v1/chat/completions"
        headers = {"X-Cycles-Tenant": "alpha"}
        body = chat(max_tokens=20, stream=True)
        responses = [await session.post(url, json=body, headers=headers) for _ in range(20)]
        assert [r.status for r in responses] == [200] * 20
        status, _ = await admin.call("POST", "/admin/v1/tenants/alpha/suspend", {"reason": "test"})
        assert status == 200
        async with session.post(url, json=chat(), headers=headers) as refused:
            assert refused.status == 403
            assert (await refused.json())["error"]["type"] == "tenant_suspended"
        await asyncio.gather(*(r.read() for r in responses))
        for r in responses:
            r.release()

        async def tenant_line_settled() -> dict[str, Any] | None:
            _, balances = await admin.call("GET", "/admin/v1/tenants/alpha/balances")
            [line] = [b for b in balances["data"] if b["level"] == "tenant"]
            return line if line["reserved"]["units"] == 0 else None

        line = await eventually(tenant_line_settled, "the 20 streams settling (nothing reserved)")
        assert line["spent"]["units"] == 20 * mini_cost(chat_prompt_tokens(body), 20)

        status, closed = await admin.call(
            "POST", "/admin/v1/tenants/alpha/close", {"reason": "bye"}
        )
        assert (status, closed["status"]) == (200, "closed")
        _, before = await admin.call("GET", "/admin/v1/tenants/alpha/balances")
        _, audit_before = await admin.call("GET", "/admin/v1/tenants/alpha/audit")
        status, _ = await admin.call("POST", "/admin/v1/tenants/alpha/close", {"reason": "again"})
        assert status == 200
        _, after = await admin.call("GET", "/admin/v1/tenants/alpha/balances")
        _, audit_after = await admin.call("GET", "/admin/v1/tenants/alpha/audit")
        assert after == before
        assert len(audit_after["data"]) == len(audit_before["data"])
        status, error = await admin.call("POST", "/admin/v1/tenants/alpha/reactivate", {})
        assert status == 409
        status, error = await admin.call(
            "POST", "/admin/v1/tenants", {"id": "alpha", "plan": "test"}
        )
        assert status == 409 and "never reused" in error["error"]["message"]


SIGNED_IN = [
    ("POST", "/v1/chat/completions", "Authorization", chat()),
    (
        "POST",
        "/v1/completions",
        "Authorization",
        {"model": "gpt-3.5-turbo-instruct", "prompt": "hi"},
    ),
    ("POST", "/v1/embeddings", "Authorization", {"model": "text-embedding-3-small", "input": "hi"}),
    ("POST", "/v1/responses", "Authorization", {"model": "gpt-4o-mini", "input": "hi"}),
    (
        "POST",
        "/v1/messages",
        "x-api-key",
        {"model": "gpt-4o-mini", "max_tokens": 5, "messages": []},
    ),
    ("POST", "/openai/deployments/mini/chat/completions?api-version=2024-10-21", "api-key", chat()),
    ("GET", "/v1/models", "Authorization", None),
    ("GET", "/v1/models/gpt-4o-mini", "Authorization", None),
    ("GET", "/v1/cycles/balances", "Authorization", None),
    ("POST", "/v1/cycles/reservations", "Authorization", {"amount": "1", "unit": "USD"}),
]
"""Every path a tenant's key opens, with the header its SDK sends the key in."""


async def test_closing_a_tenant_revokes_its_keys_on_every_path(
    tmp_path: Path, store_url: str
) -> None:
    pol = dataclasses.replace(policy(tmp_path, BUDGET), identity="api_key")
    async with stacks(pol, store_url) as (stack, admin), aiohttp.ClientSession() as session:
        _, created = await admin.call("POST", "/admin/v1/tenants", {"id": "gone", "plan": "test"})
        key = created["api_key"]["key"]
        async with session.get(
            stack.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}
        ) as r:
            assert r.status == 200  # the key works until the tenant is closed
        async with session.post(
            stack.url + "/v1/chat/completions",
            json=chat(),
            headers={"Authorization": f"Bearer {key}"},
        ) as r:
            assert r.status == 200
        forwarded = len(stack.fake.requests)
        status, closed = await admin.call("POST", "/admin/v1/tenants/gone/close", {"reason": "bye"})
        assert (status, closed["status"]) == (200, "closed")
        _, keys = await admin.call("GET", "/admin/v1/tenants/gone/keys")
        assert [k["state"] for k in keys["data"]] == ["revoked"]

        refused = {}
        for method, path, header, body in SIGNED_IN:
            value = f"Bearer {key}" if header == "Authorization" else key
            async with session.request(
                method, stack.url + path, json=body, headers={header: value}
            ) as r:
                refused[path] = r.status
        assert refused == {path: 401 for _, path, _, _ in SIGNED_IN}
        assert len(stack.fake.requests) == forwarded
        _, balances = await admin.call("GET", "/admin/v1/tenants/gone/balances")
    [line] = [b for b in balances["data"] if b["level"] == "tenant"]
    assert line["spent"]["units"] == mini_cost(chat_prompt_tokens(chat()), 100)
    assert line["reserved"]["units"] == 0


async def test_admin_needs_its_token_and_is_not_on_the_proxy_port(tmp_path: Path) -> None:
    async with stacks(policy(tmp_path, BUDGET), "memory://") as (stack, admin):
        assert (await admin.call("GET", "/admin/v1/tenants", token="wrong"))[0] == 401
        async with admin.session.get(admin.url + "/admin/v1/tenants") as r:
            assert r.status == 401
        assert (await admin.call("GET", "/admin/v1/tenants", token=READER))[0] == 200
        status, error = await admin.call(
            "POST", "/admin/v1/tenants/alpha/suspend", {}, token=READER
        )
        assert status == 403 and error["error"]["type"] == "read_only"
        async with admin.session.get(
            stack.url + "/admin/v1/tenants", headers={"Authorization": f"Bearer {ADMIN}"}
        ) as r:
            assert r.status == 404


async def test_credit_raises_remaining_and_reset_zeroes_spend(
    tmp_path: Path, store_url: str
) -> None:
    pol = policy(tmp_path, "tenant: {limit: 0.00005, period: month}")
    async with stacks(pol, store_url) as (stack, admin), aiohttp.ClientSession() as session:
        url = f"{stack.url}/v1/chat/completions"
        async with session.post(url, json=chat(), headers={"X-Cycles-Tenant": "alpha"}) as r:
            assert r.status == 402
        status, line = await admin.call(
            "POST",
            "/admin/v1/tenants/alpha/adjustments",
            {"level": "tenant", "amount": "1", "reason": "top-up"},
            key="topup-1",
        )
        assert status == 200 and line["credit"]["units"] == 10**8
        again = await admin.call(
            "POST",
            "/admin/v1/tenants/alpha/adjustments",
            {"level": "tenant", "amount": "1", "reason": "top-up"},
            key="topup-1",
        )
        assert again == (200, line)  # replayed, not credited twice
        async with session.post(url, json=chat(), headers={"X-Cycles-Tenant": "alpha"}) as r:
            assert r.status == 200
        status, reset = await admin.call(
            "POST", "/admin/v1/tenants/alpha/reset", {"reason": "new contract"}
        )
        assert status == 200
        [row] = [b for b in reset["data"] if b["level"] == "tenant"]
        assert row["spent"]["units"] == 0 and row["credit"]["units"] == 10**8


async def test_key_used_with_another_tenants_header_is_refused_and_audited(
    tmp_path: Path, store_url: str
) -> None:
    pol = dataclasses.replace(policy(tmp_path, BUDGET), identity="api_key")
    async with stacks(pol, store_url) as (stack, admin), aiohttp.ClientSession() as session:
        _, a = await admin.call("POST", "/admin/v1/tenants", {"id": "tenant-a", "plan": "test"})
        await admin.call("POST", "/admin/v1/tenants", {"id": "tenant-b", "plan": "test"})
        _, audit_a = await admin.call("GET", "/admin/v1/tenants/tenant-a/audit")
        _, audit_b = await admin.call("GET", "/admin/v1/tenants/tenant-b/audit")
        headers = {"Authorization": f"Bearer {a['api_key']['key']}", "X-Cycles-Tenant": "tenant-b"}
        async with session.post(
            f"{stack.url}/v1/chat/completions", json=chat(), headers=headers
        ) as r:
            assert r.status == 403
            assert (await r.json())["error"]["type"] == "tenant_mismatch"
        assert stack.fake.requests == []
        for tenant in ("tenant-a", "tenant-b"):
            _, balances = await admin.call("GET", f"/admin/v1/tenants/{tenant}/balances")
            assert balances["data"] == []
        _, after_b = await admin.call("GET", "/admin/v1/tenants/tenant-b/audit")
        assert after_b == audit_b
        _, after_a = await admin.call("GET", "/admin/v1/tenants/tenant-a/audit")
        new = after_a["data"][len(audit_a["data"]) :]
        assert [(e["kind"], e["reason"]) for e in new] == [("reject", "tenant_mismatch")]
        async with admin.session.get(
            admin.url + "/admin/v1/tenants/tenant-a/audit?format=jsonl",
            headers={"Authorization": f"Bearer {READER}"},
        ) as r:
            lines = (await r.read()).decode().splitlines()
        assert len(lines) == len(after_a["data"]) and '"reject"' in lines[-1]


async def test_cli_drives_the_admin_api(tmp_path: Path) -> None:
    async with stacks(policy(tmp_path, BUDGET), "memory://") as (_, admin):

        async def cli(*args: str) -> tuple[int, str, str]:
            env = {**os.environ, "CYCLES_ADMIN_URL": admin.url, "CYCLES_ADMIN_TOKEN": ADMIN}
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "proxy",
                "admin",
                *args,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await process.communicate()
            return process.returncode or 0, out.decode(), err.decode()

        code, out, _ = await cli("tenants", "create", "customer-47", "--plan", "test")
        assert code == 0 and "customer-47" in out and "API key (shown once): ck-" in out
        code, out, _ = await cli("--json", "tenants", "suspend", "customer-47", "--reason", "loop")
        assert code == 0 and orjson.loads(out)["status"] == "suspended"
        code, out, _ = await cli("keys", "list", "customer-47")
        assert code == 0 and "active" in out and "ck-" not in out
        code, out, _ = await cli("credit", "customer-47", "--amount", "5", "--reason", "goodwill")
        assert code == 0 and "5.000000 USD" in out
        code, out, _ = await cli("audit", "customer-47")
        assert code == 0 and "admin" in out
        code, _, err = await cli("tenants", "get", "nobody")
        assert code == 1 and "404" in err


async def test_an_override_takes_effect_on_the_next_call_of_every_replica(
    tmp_path: Path, redis_url: str
) -> None:
    pol = policy(tmp_path, BUDGET)
    async with (
        stacks(pol, redis_url) as (one, admin),
        local_stack(pol, store=redis_url) as two,
        aiohttp.ClientSession() as session,
    ):

        async def remaining(stack: Stack) -> str:
            url = f"{stack.url}/v1/chat/completions"
            async with session.post(url, json=chat(), headers={"X-Cycles-Tenant": "alpha"}) as r:
                assert r.status == 200
                return r.headers["X-Cycles-Remaining"]

        assert (await remaining(one)).startswith("49.99")
        assert (await remaining(two)).startswith("49.99")  # both replicas cached alpha
        status, _ = await admin.call(
            "PATCH", "/admin/v1/tenants/alpha", {"overrides": {"tenant": "80"}}
        )
        assert status == 200
        assert (await remaining(one)).startswith("79.99")
        assert (await remaining(two)).startswith("79.99")
