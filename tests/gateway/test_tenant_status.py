"""Every path a tenant can reach checks the tenant's status: a suspended or closed tenant gets 403
on budgeted calls, the model list, passthrough paths and the actions API, in both identity
modes, on both stores, and nothing is forwarded or reserved. What it had in flight before the
suspension still settles (a reservation made before it can be committed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from boundary_support import bearer, call, with_admin
from conftest import free_port
from support import chat

from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.testing.local import local_stack

POLICY = """
identity: {identity}
upstreams:
  openai: {{base_url: "https://api.openai.com/v1", passthrough: ["/audio/speech"]}}
routes:
  - {{model: "*", upstream: openai}}
models:
  gpt-4o-mini: {{input: 0.15, output: 0.60}}
actions:
  send_email: {{RISK_POINTS: 50}}
plans:
  ops:
    default_max_tokens: 100
    budgets:
      tenant: {{limit: 5, period: month}}
    action_budgets:
      tenant: {{limit: 500, period: month}}
"""
RESERVATIONS = "/v1/cycles/reservations"
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/chat/completions", chat()),
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/gpt-4o-mini", None),
    ("POST", "/v1/audio/speech", {"model": "tts-1", "input": "hi", "voice": "alloy"}),
    ("POST", RESERVATIONS, {"action": "send_email"}),
    ("GET", "/v1/cycles/balances", None),
]
"""One route of each class a tenant reaches: budgeted, the model list (and one model),
passthrough, and the actions API (reserve, balances)."""


def make_policy(tmp_path: Path, identity: str, extra: str = "") -> Policy:
    path = tmp_path / "policy.yaml"
    text = POLICY.format(identity="api_key" if identity == "gateway" else "header")
    path.write_text(text + extra)
    return load_policy(path)


@pytest.mark.parametrize(
    ("identity", "status"),
    [("sidecar", "suspended"), ("sidecar", "closed"), ("gateway", "suspended")],
)
async def test_an_inactive_tenant_is_refused_on_every_route_and_spends_nothing(
    tmp_path: Path, store_url: str, identity: str, status: str
) -> None:
    """(A closed tenant's keys are revoked, so in gateway mode it gets 401 everywhere:
    test_admin.py::test_closing_a_tenant_revokes_its_keys_on_every_path.)"""
    pol = make_policy(tmp_path, identity)
    async with with_admin(pol, store_url) as (stack, admin):
        _, _, onboarded = await admin.call(
            "POST", "/admin/v1/tenants", {"id": "acme", "plan": "ops"}
        )
        who = (
            bearer(onboarded["api_key"]["key"])
            if identity == "gateway"
            else {"X-Cycles-Tenant": "acme"}
        )
        before = {
            path: (await call(stack, method, path, who, body))[0] for method, path, body in ROUTES
        }
        assert before == {path: 201 if path == RESERVATIONS else 200 for _, path, _ in ROUTES}
        _, held = await call(stack, "POST", RESERVATIONS, who, {"action": "send_email"})
        forwarded = len(stack.fake.requests)
        _, _, lines = await admin.call("GET", "/admin/v1/tenants/acme/balances")

        verb = {"suspended": "suspend", "closed": "close"}[status]
        changed, _, _ = await admin.call("POST", f"/admin/v1/tenants/acme/{verb}", {"reason": "t"})
        assert changed == 200
        for method, path, body in ROUTES:
            code, answer = await call(stack, method, path, who, body)
            assert code == 403, (path, answer)
            assert answer["error"]["type"] == f"tenant_{status}", (path, answer)
            assert "operator" in answer["error"]["message"], (path, answer)
        assert len(stack.fake.requests) == forwarded  # nothing went upstream
        assert (await admin.call("GET", "/admin/v1/tenants/acme/balances"))[2] == lines

        # A reservation made before the suspension still settles: its spend is recorded.
        path = f"{RESERVATIONS}/{held['id']}"
        assert (await call(stack, "GET", path, who))[0] == 200
        code, committed = await call(stack, "POST", path + "/commit", who, {"amount": 30})
        assert (code, committed["status"], committed["amount"]) == (200, "COMMITTED", 30)
        _, _, after = await admin.call("GET", "/admin/v1/tenants/acme/balances")
        [risk] = [b for b in after["data"] if b["unit"] == "RISK_POINTS"]
        # 30 committed; the reservation the first round of calls made is still open.
        assert (risk["spent"]["units"], risk["reserved"]["units"]) == (30, 50)


async def test_sidecar_unbudgeted_routes_need_the_tenant_header(tmp_path: Path) -> None:
    """Without X-Cycles-Tenant a sidecar could not tell whose status to check, so the model list
    and passthrough paths ask for it as budgeted calls do."""
    async with with_admin(make_policy(tmp_path, "sidecar"), "memory://") as (stack, _):
        for method, path, body in ROUTES[1:4]:
            code, answer = await call(stack, method, path, {}, body)
            assert code == 400 and "X-Cycles-Tenant" in answer["error"]["message"], path
        assert stack.fake.requests == []


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
async def test_unbudgeted_routes_follow_fail_mode_when_the_status_cannot_be_read(
    tmp_path: Path, fail_mode: str
) -> None:
    seeded = make_policy(tmp_path, "sidecar", "tenants:\n  acme: {plan: ops}\n")
    pol = dataclasses.replace(seeded, fail_mode=fail_mode)
    dead_store = f"redis://127.0.0.1:{free_port()}/0"
    async with local_stack(pol, store=dead_store, sweep_every=None) as stack:
        code, answer = await call(stack, "GET", "/v1/models", {"X-Cycles-Tenant": "acme"})
        if fail_mode == "closed":
            assert code == 503 and answer["error"]["code"] == "ledger_unavailable"
            assert stack.fake.requests == []
        else:  # the policy's view of the tenant: a seed, so active
            assert code == 200 and len(stack.fake.requests) == 1
        code, answer = await call(stack, "GET", "/v1/models", {"X-Cycles-Tenant": "nobody"})
        assert code == (503 if fail_mode == "closed" else 403)


async def test_a_suspended_tenant_gets_no_replay_of_an_answer_either(
    tmp_path: Path, store_url: str
) -> None:
    """A retry answered from the idempotency record reserves nothing, so no reserve script sees
    the suspension: the status is read before the stored answer is replayed."""
    async with with_admin(make_policy(tmp_path, "sidecar"), store_url) as (stack, admin):
        await admin.call("POST", "/admin/v1/tenants", {"id": "acme", "plan": "ops"})
        calls = [
            ("/v1/chat/completions", chat(), 200),
            (RESERVATIONS, {"action": "send_email"}, 201),
        ]
        for path, body, first in calls:
            keyed = {"X-Cycles-Tenant": "acme", "Idempotency-Key": path}
            assert (await call(stack, "POST", path, keyed, body))[0] == first
            assert (await call(stack, "POST", path, keyed, body))[0] == first  # replayed
        _, _, lines = await admin.call("GET", "/admin/v1/tenants/acme/balances")
        await admin.call("POST", "/admin/v1/tenants/acme/suspend", {"reason": "t"})
        for path, body, _ in calls:
            keyed = {"X-Cycles-Tenant": "acme", "Idempotency-Key": path}
            code, answer = await call(stack, "POST", path, keyed, body)
            assert code == 403 and answer["error"]["type"] == "tenant_suspended", path
        assert (await admin.call("GET", "/admin/v1/tenants/acme/balances"))[2] == lines
        assert stack.fake.calls == 1
