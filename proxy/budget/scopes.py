"""Request headers → a validated scope path.

Budgets key every level by (tenant, level, value), not by the full path: workflow `triage` is one
budget whether or not the call also named an agent. The run is keyed by (tenant, run id) alone,
and so is the end user (tenant, user id): budget/end_users.py says where its id comes from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from proxy.core.errors import BadRequest
from proxy.core.types import SCOPE_VALUE
from proxy.policy.runtime import LEVELS, Plan
from proxy.store.ledger.base import BudgetLine

HEADERS: Mapping[str, str] = {
    "tenant": "X-Cycles-Tenant",
    "workspace": "X-Cycles-Workspace",
    "app": "X-Cycles-App",
    "workflow": "X-Cycles-Workflow",
    "agent": "X-Cycles-Agent",
    "toolset": "X-Cycles-Toolset",
    "run": "X-Cycles-Run",
    "user": "X-Cycles-User",
}


@dataclass(frozen=True, slots=True)
class Scope:
    tenant: str
    values: Mapping[str, str]
    """Level → lowercased value, for every level the call named (tenant and run included)."""
    pins: Mapping[str, str] = field(default_factory=dict)
    """Level → value of every level below the tenant that the caller's API key pins (gateway
    mode); empty for a key that pins none and in sidecar mode. The caller cannot name another
    value for these: what it may reach is bounded by them (actions/reserving.py may_settle,
    gateway/replay.py's idempotency namespace)."""

    @property
    def run(self) -> str | None:
        return self.values.get("run")

    def path(self) -> str:
        """`tenant/workspace/…` as named, for logs."""
        return path_of(self.values)


def path_of(values: Mapping[str, str]) -> str:
    """`tenant=acme/agent=bot`: the levels in `values`, outermost first."""
    return "/".join(f"{level}={values[level]}" for level in LEVELS if level in values)


def parse_path(path: str) -> dict[str, str]:
    """The levels of a path that `path_of` wrote (values never contain `/` or `=`)."""
    return dict(part.split("=", 1) for part in path.split("/") if "=" in part)


def check_value(header: str, raw: str) -> str:
    """Validate one scope value; returns it lowercased."""
    if not SCOPE_VALUE.fullmatch(raw):
        raise BadRequest(
            f"Header {header} has an invalid value: use 1 to 128 characters from "
            "A-Z, a-z, 0-9, '_', '.' and '-' (not '-' alone).",
            code="invalid_scope_header",
            param=header,
        )
    return raw.lower()


def from_headers(headers: Mapping[str, str]) -> Scope:
    """Read the scope path; a missing tenant or any malformed value is a 400 naming the header."""
    values: dict[str, str] = {}
    for level, header in HEADERS.items():
        raw = headers.get(header)
        if raw is not None:
            values[level] = check_value(header, raw)
    if "tenant" not in values:
        raise BadRequest(
            "Missing X-Cycles-Tenant header: every call must name its tenant.",
            code="missing_tenant",
            param="X-Cycles-Tenant",
        )
    return Scope(tenant=values["tenant"], values=values)


def budget_lines(
    plan: Plan, scope: Scope, overrides: Mapping[str, int] | None = None
) -> list[BudgetLine]:
    """Every budget of the plan whose level the call names; a tenant's override replaces the
    plan's limit on its level."""
    overrides = overrides or {}
    return [
        BudgetLine(
            budget.level,
            scope.values[budget.level],
            budget.unit,
            budget.period,
            overrides.get(budget.level, budget.limit),
        )
        for budget in plan.budgets
        if budget.level in scope.values
    ]
