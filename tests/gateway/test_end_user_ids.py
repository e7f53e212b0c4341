"""How an end user's id is kept (issue 18): with `user_ids: hash` the ledger, the audit trail and
the call log keep only a keyed hash, mixed with the tenant, while the body goes upstream as sent;
without its secret such a policy neither starts nor reloads; under `plain` an id that cannot be
kept is refused where the plan keeps anything per user, and passed over where it keeps nothing;
and in gateway mode a key may pin the user."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from admin_support import admin_stack
from boundary_support import bearer, call, gateway, sidecar, with_admin
from conftest import REDIS, free_port
from ledger_support import every_row
from support import chat, eventually

from proxy.core.errors import PolicyError, StoreUnsafe
from proxy.gateway.context import RUNTIME
from proxy.testing.local import local_stack

SECRET = "s3cret-for-the-tests-0123456789"
BUDGETS = "tenant: {limit: 50, period: month}\nuser: {limit: 1, period: day}"
T = "/admin/v1/tenants/alpha"
CHAT = "/v1/chat/completions"


def kept(tenant: str, user: str) -> str:
    """The id as kept, by the rule the README states, computed apart from the proxy."""
    message = f"{tenant}\n{user.lower()}".encode()
    return hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()[:32]


def headers(tenant: str = "alpha", **more: str) -> dict[str, str]:
    return {"X-Cycles-Tenant": tenant, **more}


async def user_rows(stack: Any, tenant: str = "alpha") -> dict[str, int]:
    rows = await every_row(stack.ledger, tenant)
    return {r.value: r.spent for r in rows if r.level == "user"}


async def test_hashed_ids_are_all_the_ledger_audit_and_log_keep(
    tmp_path: Path,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("CYCLES_USER_ID_SECRET", SECRET)
    caplog.set_level(logging.INFO, logger="cycles.calls")
    pol = sidecar(tmp_path, "user_ids: hash\n", budgets=BUDGETS)
    async with local_stack(pol, store=store_url) as stack:
        email = "Alice@Example.com"
        for tenant, body in (("alpha", chat(user=email)), ("beta", chat(user=email))):
            assert (await call(stack, "POST", CHAT, headers(tenant), body))[0] == 200
        same = headers(**{"X-Cycles-User": "Bob-1"})
        assert (await call(stack, "POST", CHAT, same, chat(user="ignored")))[0] == 200
        assert (await call(stack, "POST", CHAT, headers(), chat(user="bob-1")))[0] == 200
        await eventually(lambda: len(caplog.records) >= 4, "the calls' log lines")
        alpha, beta = await user_rows(stack), await user_rows(stack, "beta")
        assert set(alpha) == {kept("alpha", email), kept("alpha", "bob-1")}
        assert alpha[kept("alpha", "bob-1")] == 2 * alpha[kept("alpha", email)] > 0
        assert set(beta) == {kept("beta", email)} != {kept("alpha", email)}
        assert [body["user"] for _, _, body in stack.fake.requests][:2] == [email, email]
        trail = await stack.stores.tenants.audit("alpha")
        logged = [r.getMessage() for r in caplog.records if r.name == "cycles.calls"]
        kept_text = orjson.dumps([e.fields for e in trail]).decode() + " ".join(logged)
        assert f"user={kept('alpha', email)}" in kept_text
        assert "alice" not in kept_text.lower() and "bob-1" not in kept_text


async def test_without_its_secret_a_hashing_policy_neither_starts_nor_reloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("CYCLES_USER_ID_SECRET", raising=False)
    hashing = sidecar(tmp_path, "user_ids: hash\n", budgets=BUDGETS)
    with pytest.raises(PolicyError, match="CYCLES_USER_ID_SECRET"):
        async with local_stack(hashing):
            pass
    monkeypatch.setenv("CYCLES_USER_ID_SECRET", "too-short")
    with pytest.raises(PolicyError, match="at least 16 characters"):
        async with local_stack(hashing):
            pass
    monkeypatch.delenv("CYCLES_USER_ID_SECRET")
    path = tmp_path / "policy.yaml"
    hashed_text = path.read_text()
    plain = sidecar(tmp_path, "", budgets=BUDGETS)
    async with local_stack(plain, policy_path=str(path), reload_every=0.02) as stack:
        _rewrite(path, hashed_text)
        await eventually(lambda: "CYCLES_USER_ID_SECRET" in caplog.text, "the refusal logged")
        assert stack.app[RUNTIME].policy.user_ids == "plain"
        assert (await call(stack, "POST", CHAT, headers(), chat(user="carol")))[0] == 200
        assert await user_rows(stack) == {"carol": await _one(stack, "carol")}
        monkeypatch.setenv("CYCLES_USER_ID_SECRET", SECRET)
        caplog.clear()
        _rewrite(path, hashed_text + "\n# now with its secret\n")
        await eventually(lambda: "only with a restart" in caplog.text, "the refusal logged")
        assert "user_ids: changed from plain to hash" in caplog.text
        assert stack.app[RUNTIME].policy.user_ids == "plain"
        assert (await call(stack, "POST", CHAT, headers(), chat(user="carol")))[0] == 200
        assert await user_rows(stack) == {"carol": await _one(stack, "carol")}


async def test_a_reload_never_changes_how_ids_are_kept(
    tmp_path: Path,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """plain <-> hash, or another secret, would give every user a second id and budget: a
    restart-only change, refused on reload whatever the store."""
    monkeypatch.setenv("CYCLES_USER_ID_SECRET", SECRET)
    monkeypatch.setenv("ANOTHER_SECRET", "another-secret-0123456789")
    path = tmp_path / "policy.yaml"
    refused = []
    for extra, says in (
        ("user_ids: hash\nuser_id_secret_env: ANOTHER_SECRET\n", "the secret changed"),
        ("", "user_ids: changed from hash to plain"),
    ):
        sidecar(tmp_path, extra, budgets=BUDGETS)
        refused.append((path.read_text(), says))
    hashing = sidecar(tmp_path, "user_ids: hash\n", budgets=BUDGETS)
    hashed_text = path.read_text()
    caplog.set_level(logging.INFO, logger="proxy.policy.watcher")
    reloading = local_stack(hashing, store=store_url, policy_path=str(path), reload_every=0.02)
    async with reloading as stack:
        for text, says in refused:
            caplog.clear()
            _rewrite(path, text)
            await eventually(partial(_said, caplog, says), f"the refusal: {says}")
            assert stack.app[RUNTIME].policy.user_ids == "hash"
            assert stack.app[RUNTIME].users.secret == SECRET.encode()
        _rewrite(path, hashed_text + "\n# the same ids\n")
        await eventually(partial(_said, caplog, "policy reloaded"), "a reload keeping the ids")
        assert (await call(stack, "POST", CHAT, headers(), chat(user="carol")))[0] == 200
        assert kept("alpha", "carol") in await user_rows(stack)


def _said(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return text in caplog.text


@pytest.mark.parametrize("store_url", [REDIS], indirect=True)
async def test_replicas_with_different_secrets_cannot_share_a_store(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each replica would keep one user under its own id, with its own budget: the store
    records the first secret's fingerprint, and a proxy with another refuses to start (one
    line, exit 2)."""
    pol = sidecar(tmp_path, "user_ids: hash\n", budgets=BUDGETS)
    monkeypatch.setenv("CYCLES_USER_ID_SECRET", SECRET)
    async with local_stack(pol, store=store_url) as one:
        assert (await call(one, "POST", CHAT, headers(), chat(user="alice")))[0] == 200
        monkeypatch.setenv("CYCLES_USER_ID_SECRET", "replica-two-secret-0123456789")
        with pytest.raises(StoreUnsafe, match="not the one this store"):
            async with local_stack(pol, store=store_url):
                pass
        argv = [sys.executable, "-m", "proxy", "serve", "--policy", str(tmp_path / "policy.yaml")]
        argv += ["--store", store_url, "--listen", f"127.0.0.1:{free_port()}"]
        argv += ["--admin-listen", "off"]
        run = partial(subprocess.run, argv, capture_output=True, text=True, timeout=60)
        result = await asyncio.to_thread(run)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert "not the one this store" in result.stderr, result.stderr
        monkeypatch.setenv("CYCLES_USER_ID_SECRET", SECRET)
        async with local_stack(pol, store=store_url) as again:  # the same secret: welcome
            assert (await call(again, "POST", CHAT, headers(), chat(user="alice")))[0] == 200


@pytest.mark.parametrize("store_url", [REDIS], indirect=True)
async def test_plain_and_hashing_replicas_cannot_share_a_store(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica keeping ids as sent beside one hashing them would keep one user under two ids,
    each with a budget: the store records `plain` too, and a replica keeping ids otherwise than
    it says refuses to start (one line, exit 2). A store without the record (from before it was
    kept) takes the first replica's."""
    monkeypatch.setenv("CYCLES_USER_ID_SECRET", SECRET)
    (tmp_path / "h").mkdir()
    (tmp_path / "p").mkdir()
    hashed = sidecar(tmp_path / "h", "user_ids: hash\n", budgets=BUDGETS)
    plain = sidecar(tmp_path / "p", budgets=BUDGETS)
    async with local_stack(plain, store=store_url) as one:
        assert (await call(one, "POST", CHAT, headers(), chat(user="alice")))[0] == 200
        client = one.ledger.scripts.client
        assert await client.get("cy:v1:user_ids") in ("plain", b"plain")
        with pytest.raises(StoreUnsafe, match=r"user_ids: hash: .* kept under user_ids: plain"):
            async with local_stack(hashed, store=store_url):
                pass
        argv = [sys.executable, "-m", "proxy", "serve", "--policy", str(tmp_path / "h/policy.yaml")]
        argv += ["--store", store_url, "--listen", f"127.0.0.1:{free_port()}"]
        argv += ["--admin-listen", "off"]
        run = partial(subprocess.run, argv, capture_output=True, text=True, timeout=60)
        result = await asyncio.to_thread(run)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert "kept under user_ids: plain" in result.stderr, result.stderr
        await client.delete("cy:v1:user_ids")  # a store from before the mode was recorded
        async with local_stack(hashed, store=store_url) as two:
            assert (await call(two, "POST", CHAT, headers(), chat(user="alice")))[0] == 200
            with pytest.raises(StoreUnsafe, match=r"user_ids: plain: .* kept under user_ids: hash"):
                async with local_stack(plain, store=store_url):
                    pass


def _rewrite(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


async def _one(stack: Any, user: str) -> int:
    return (await user_rows(stack))[user]


@pytest.mark.parametrize("budgets", [BUDGETS, "tenant: {limit: 50, period: month}"])
async def test_an_id_plain_cannot_keep_is_refused_only_where_users_are_kept(
    tmp_path: Path, store_url: str, budgets: str
) -> None:
    async with local_stack(sidecar(tmp_path, budgets=budgets), store=store_url) as stack:
        status, answer = await call(stack, "POST", CHAT, headers(), chat(user="a@b.c"))
        if "user:" in budgets:
            assert status == 400 and answer["error"]["code"] == "invalid_user"
            assert answer["error"]["param"] == "user" and "user_ids: hash" in str(answer)
            assert await every_row(stack.ledger, "alpha") == [] and stack.fake.calls == 0
        else:
            assert status == 200 and await user_rows(stack) == {}
        bad_header = headers(**{"X-Cycles-User": "a@b.c"})
        status, answer = await call(stack, "POST", CHAT, bad_header, chat())
        assert (status, answer["error"]["param"]) == (400, "X-Cycles-User")


async def test_a_lone_dash_is_no_scope_value(tmp_path: Path, store_url: str) -> None:
    """The ledger's scripts read `-` as "every value" (a reset) or "no period": no user, header
    or admin value may be one, so `-` cannot stand for every end user."""
    async with admin_stack(sidecar(tmp_path, budgets=BUDGETS), store_url) as (stack, admin):
        status, answer = await call(stack, "POST", CHAT, headers(), chat(user="-"))
        assert (status, answer["error"]["code"], answer["error"]["param"]) == (
            400,
            "invalid_user",
            "user",
        )
        assert "not '-' alone" in answer["error"]["message"]
        for header in ("X-Cycles-User", "X-Cycles-Run"):
            status, answer = await call(stack, "POST", CHAT, headers(**{header: "-"}), chat())
            assert (status, answer["error"]["param"]) == (400, header), answer
        assert await every_row(stack.ledger, "alpha") == [] and stack.fake.calls == 0
        assert (await call(stack, "POST", CHAT, headers(), chat(user="bob")))[0] == 200
        reset = {"level": "user", "value": "-", "reason": "everyone?"}
        status, answer = await admin.call("POST", f"{T}/reset", reset)
        assert (status, answer["error"]["param"]) == (400, "value"), answer
        assert "bob" in await user_rows(stack)


@pytest.mark.parametrize("ids", ["plain", "hash"])
async def test_a_key_may_pin_the_user(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch, ids: str
) -> None:
    monkeypatch.setenv("CYCLES_USER_ID_SECRET", SECRET)
    pol = gateway(tmp_path, f"user_ids: {ids}\n", budgets=BUDGETS)
    async with with_admin(pol, store_url) as (stack, admin):
        status, _, key = await admin.call("POST", f"{T}/keys", {"user": "U-7"})
        assert status == 201 and key["user"] == "u-7"
        plain = key["key"]
        for refused in (
            bearer(plain, **{"X-Cycles-User": "u-8"}),
            {"body": "u-8", **bearer(plain)},
        ):
            body = chat(user=refused.pop("body")) if "body" in refused else chat()
            code, answer = await call(stack, "POST", CHAT, refused, body)
            assert code == 403 and answer["error"]["type"] == "scope_mismatch"
        assert await every_row(stack.ledger, "alpha") == [] and stack.fake.calls == 0
        for body in (chat(), chat(user="U-7"), chat(safety_identifier="u-7")):
            assert (await call(stack, "POST", CHAT, bearer(plain), body))[0] == 200
        value = "u-7" if ids == "plain" else kept("alpha", "u-7")
        spent = await user_rows(stack)
        assert list(spent) == [value] and spent[value] > 0
        _, _, listed = await admin.call("GET", f"{T}/keys")
        assert [k["user"] for k in listed["data"] if k["id"] == key["id"]] == ["u-7"]
