"""End users in the policy (issue 18): a plan budgets the `user` level with any period, quotas
name it (`concurrent_requests`, `requests_per_minute` by level), `user_idle_seconds` keeps in
order with the cap, and `user_ids` says how ids are kept; `cycles-proxy check` says all of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.core.errors import PolicyError
from proxy.core.types import UNITS_PER_USD
from proxy.policy import describe, load_policy
from proxy.policy.runtime import Budget

POLICY = """\
{top}
upstreams:
  openai: {{base_url: "https://api.openai.com/v1"}}
routes:
  - {{model: "*", upstream: openai}}
models:
  gpt-4o-mini: {{input: 0.15, output: 0.60}}
plans:
  saas:
    budgets:
      tenant: {{limit: 50, period: month}}
      user:   {{limit: "2.00", period: day}}
    quotas:
      {quotas}
tenants:
  customer-47: {{plan: saas}}
"""
QUOTAS = "{concurrent_requests: {user: 2}, requests_per_minute: {tenant: 600, user: 30}}"


def load(tmp_path: Path, top: str = "", quotas: str = QUOTAS) -> str | object:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(top=top, quotas=quotas))
    return load_policy(path)


def refusal(tmp_path: Path, top: str = "", quotas: str = QUOTAS) -> str:
    with pytest.raises(PolicyError) as refused:
        load(tmp_path, top, quotas)
    return str(refused.value)


def test_a_plan_budgets_each_end_user_and_its_quotas_name_the_level(tmp_path: Path) -> None:
    policy = load(tmp_path)
    plan = policy.plans["saas"]  # type: ignore[attr-defined]
    assert plan.budgets[1] == Budget("user", 2 * UNITS_PER_USD, "USD", "day")
    assert plan.quotas.requests_per_minute == 600
    assert plan.quotas.level_requests_per_minute == (("user", 30),)
    assert plan.quotas.concurrent_requests == (("user", 2),)
    assert plan.limits_level("user") and not plan.limits_level("agent")
    assert policy.user_ids == "plain"  # type: ignore[attr-defined]
    assert policy.reservations.user_idle_ms == 7 * 24 * 3600 * 1000  # type: ignore[attr-defined]
    text = describe(policy)  # type: ignore[arg-type]
    assert "user       2.00 USD per day for each end user" in text
    assert "requests per minute 600; 2 concurrent per user; 30 requests a minute per user" in text
    assert "user idle 604800" in text and "end user ids: kept as sent" in text


def test_a_rate_for_a_number_is_the_tenants_as_before(tmp_path: Path) -> None:
    plan = load(tmp_path, quotas="{requests_per_minute: 60}").plans["saas"]  # type: ignore[attr-defined]
    assert (plan.quotas.requests_per_minute, plan.quotas.level_requests_per_minute) == (60, ())


def test_hashed_ids_and_their_secret_are_named_in_the_policy(tmp_path: Path) -> None:
    top = (
        "user_ids: hash\nuser_id_secret_env: SAAS_USER_KEY\nreservations: {user_idle_seconds: 3600}"
    )
    policy = load(tmp_path, top)
    assert (policy.user_ids, policy.user_id_secret_env) == ("hash", "SAAS_USER_KEY")  # type: ignore[attr-defined]
    assert policy.reservations.user_idle_ms == 3_600_000  # type: ignore[attr-defined]
    assert "HMAC-SHA256 keyed by $SAAS_USER_KEY" in describe(policy)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("top", "quotas", "message"),
    [
        ("", "{requests_per_minute: {users: 30}}", "requests_per_minute.users: unknown level"),
        ("", "{requests_per_minute: {user: 0}}", "user: Input should be greater than 0"),
        ("user_ids: hashed", QUOTAS, "user_ids: Input should be 'plain' or 'hash'"),
        ("user_id_secret_env: 'not a name'", QUOTAS, "is not an environment variable name"),
        (
            "reservations: {user_idle_seconds: 60}",
            QUOTAS,
            "reservations.user_idle_seconds (60) must exceed cap_seconds (1800), or an end "
            "user's budget",
        ),
    ],
)
def test_what_cannot_be_meant_is_refused_naming_the_field(
    tmp_path: Path, top: str, quotas: str, message: str
) -> None:
    assert message in refusal(tmp_path, top, quotas)
