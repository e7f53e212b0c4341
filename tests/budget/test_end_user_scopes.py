"""Where a call's end user comes from and how its id is kept (budget/end_users.py), without a
store: the key's pin, then X-Cycles-User, then the body's `user`, `safety_identifier` or
`metadata.user_id`; plain ids as sent, hashed ones keyed and mixed with the tenant; an id that
cannot be kept refused only where the plan keeps something per end user."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from proxy.budget.end_users import UserIds, for_call, from_environment
from proxy.budget.reserve import quotas
from proxy.budget.scopes import Scope, from_headers
from proxy.core.errors import BadRequest, Forbidden, PolicyError
from proxy.policy.runtime import Budget, Plan, PlanQuotas, Policy

SECRET = b"0123456789abcdef-secret"
HASHED = UserIds(hashed=True, secret=SECRET)
USERS = Plan("p", (Budget("tenant", 100), Budget("user", 10, period="day")))
NO_USERS = Plan("p", (Budget("tenant", 100),))


def scope(pins: dict[str, str] | None = None, **values: str) -> Scope:
    return Scope("acme", {"tenant": "acme", **values}, pins or {})


def mac(tenant: str, user: str) -> str:
    return hmac.new(SECRET, f"{tenant}\n{user}".encode(), hashlib.sha256).hexdigest()[:32]


@pytest.mark.parametrize(
    ("endpoint", "body", "user"),
    [
        ("chat", {"user": "Alice"}, "alice"),
        ("chat", {"safety_identifier": "bob"}, "bob"),
        ("responses", {"user": "carol", "safety_identifier": "bob"}, "carol"),
        ("responses", {"user": None, "safety_identifier": "bob"}, "bob"),
        ("embeddings", {"user": "dave"}, "dave"),
        ("messages", {"metadata": {"user_id": "Eve"}}, "eve"),
        ("messages", {"user": "not-read-here"}, None),
        ("messages", {"metadata": "not an object"}, None),
        ("chat", {"metadata": {"user_id": "not-read-here"}}, None),
    ],
)
def test_the_body_names_the_user_by_the_endpoints_field(
    endpoint: str, body: dict[str, Any], user: str | None
) -> None:
    found = for_call(scope(), body, endpoint, UserIds(), USERS)
    assert found.values.get("user") == user


def test_the_header_wins_over_the_body_and_is_checked_as_every_scope_header() -> None:
    named = from_headers({"X-Cycles-Tenant": "acme", "X-Cycles-User": "Dave"})
    assert for_call(named, {"user": "alice"}, "chat", UserIds(), USERS).values["user"] == "dave"
    with pytest.raises(BadRequest) as bad:
        from_headers({"X-Cycles-Tenant": "acme", "X-Cycles-User": "a@b.c"})
    assert bad.value.param == "X-Cycles-User"


def test_a_pinned_user_is_the_keys_and_a_body_naming_another_is_403() -> None:
    pinned = scope({"user": "u-7"}, user="u-7")
    assert for_call(pinned, {}, "chat", UserIds(), NO_USERS).values["user"] == "u-7"
    assert for_call(pinned, {"user": "U-7"}, "chat", UserIds(), NO_USERS).values["user"] == "u-7"
    with pytest.raises(Forbidden) as other:
        for_call(pinned, {"user": "u-8"}, "chat", UserIds(), NO_USERS)
    assert other.value.type == "scope_mismatch"
    hashed = HASHED.in_scope(pinned)
    assert hashed.values["user"] == hashed.pins["user"] == mac("acme", "u-7")
    assert for_call(hashed, {"user": "U-7"}, "chat", HASHED, NO_USERS) == hashed


def test_hashed_ids_are_keyed_mixed_with_the_tenant_and_accept_any_string() -> None:
    assert HASHED.kept("acme", "Alice@Example.com", "user") == mac("acme", "alice@example.com")
    assert HASHED.kept("globex", "alice@example.com", "user") == mac("globex", "alice@example.com")
    other_key = UserIds(hashed=True, secret=b"another-secret-entirely")
    assert other_key.kept("acme", "alice", "user") != HASHED.kept("acme", "alice", "user")
    assert "secret" not in repr(HASHED) and SECRET.decode() not in repr(HASHED)
    for bad in ("", "x" * 257, 42, {"id": 1}):
        with pytest.raises(BadRequest):
            HASHED.kept("acme", bad, "user")
    header = from_headers({"X-Cycles-Tenant": "acme", "X-Cycles-User": "Bob"})
    assert HASHED.in_scope(header).values["user"] == mac("acme", "bob")


@pytest.mark.parametrize("plan", [USERS, NO_USERS])
def test_an_id_plain_cannot_keep_is_400_only_where_the_plan_keeps_users(plan: Plan) -> None:
    for bad in ("a@b.c", 42, ""):
        if plan is USERS:
            with pytest.raises(BadRequest) as refused:
                for_call(scope(), {"user": bad}, "chat", UserIds(), plan)
            assert (refused.value.code, refused.value.param) == ("invalid_user", "user")
        else:
            assert "user" not in for_call(scope(), {"user": bad}, "chat", UserIds(), plan).values


def test_a_plan_keeps_users_by_a_budget_an_action_budget_or_a_quota_on_the_level() -> None:
    assert USERS.limits_level("user") and not NO_USERS.limits_level("user")
    actions = Plan("p", (), action_budgets=(Budget("user", 5, "RISK_POINTS"),))
    concurrent = Plan("p", (), quotas=PlanQuotas(concurrent_requests=(("user", 2),)))
    rated = Plan("p", (), quotas=PlanQuotas(level_requests_per_minute=(("user", 30),)))
    assert all(p.limits_level("user") for p in (actions, concurrent, rated))


def test_a_users_quotas_go_to_the_ledger_with_its_id_as_kept() -> None:
    q = PlanQuotas(
        requests_per_minute=600,
        concurrent_requests=(("tenant", 20), ("user", 2)),
        level_requests_per_minute=(("user", 30),),
    )
    asked = quotas(Plan("p", (), quotas=q), scope(user="u1"))
    assert (asked.requests_per_minute, list(asked.rates)) == (600, [("user", "u1", 30)])
    assert list(asked.concurrent) == [("tenant", "acme", 20), ("user", "u1", 2)]
    assert list(quotas(Plan("p", (), quotas=q), scope()).rates) == []


def test_the_secret_comes_from_the_environment_or_the_policy_is_refused() -> None:
    assert from_environment(Policy(), {}) == UserIds()
    hashing = Policy(user_ids="hash", user_id_secret_env="MY_SECRET")
    assert from_environment(hashing, {"MY_SECRET": SECRET.decode()}) == HASHED
    for environ in ({}, {"MY_SECRET": "short"}):
        with pytest.raises(PolicyError, match="MY_SECRET"):
            from_environment(hashing, environ)
