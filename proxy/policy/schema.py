"""A raw policy (what the operator wrote) → the checked runtime form.

`compile_policy` validates a mapping against `spec.PolicySpec`, checks what spans sections (a
route's upstream, a tenant's plan, stored-object passthrough in gateway mode), converts every price
and limit from the Decimal the operator wrote into integer units, and returns a frozen
`runtime.Policy`. Every problem is collected with the field path at fault, so the loader can name
the file and line of each; nothing here reads files.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from proxy.core.encodings import encoding_for_model
from proxy.core.errors import PolicyError
from proxy.core.peers import parse_networks
from proxy.core.types import ACTION_UNITS, ReservationSettings
from proxy.policy import lifetimes
from proxy.policy.aliases import compile_aliases
from proxy.policy.features import compile_features
from proxy.policy.fields import fields_at
from proxy.policy.model_rules import default_limit_field, reasons_by_name
from proxy.policy.plans import compile_degrade, compile_quotas
from proxy.policy.runtime import (
    ENCODINGS,
    LEVELS,
    ActionPrice,
    Alerts,
    Budget,
    Limits,
    ModelPrice,
    Plan,
    Policy,
    Route,
    TenantSeed,
    Timeouts,
    Upstream,
    Webhook,
)
from proxy.policy.spec import (
    ActionBudgetSpec,
    BudgetSpec,
    ModelSpec,
    PlanSpec,
    PolicySpec,
    UpstreamSpec,
)
from proxy.policy.units import USD_PLACES, AmountError, to_units

Loc = tuple[str | int, ...]

TENANT_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
ACTION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
STORED_OBJECT_PATHS: tuple[str, ...] = (
    "/files",
    "/uploads",
    "/batches",
    "/fine_tuning",
    "/assistants",
    "/threads",
    "/vector_stores",
    "/responses",
    "/chat/completions",
    "/conversations",
    "/containers",
)
"""Endpoints that create, list or read objects kept at the provider under the proxy's key."""
_SETTINGS = {
    "mode",
    "fail_mode",
    "on_store_lost",
    "identity",
    "forwarded_header",
    "client_ipv6_prefix",
    "bound",
    "request_fields",
}
_MS_FIELDS = {
    name: name.replace("_seconds", "_ms")
    for name in (
        "cap_seconds",
        "tombstone_seconds",
        "run_idle_seconds",
        "period_grace_seconds",
        "audit_retention_seconds",
    )
}


@dataclass(frozen=True, slots=True)
class Issue:
    loc: Loc
    """The field path at fault, as pydantic writes it: ("plans", "pro", "budgets", …)."""
    message: str


def field_path(loc: Loc) -> str:
    """`plans.pro.budgets.tenant.limit`, `routes[0].upstream`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":
            text += f".{part}" if text else part
    return text or "(top level)"


class PolicyIssues(PolicyError):
    """`compile_policy` found problems, each with its field path (the loader adds file and line)."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(f"{field_path(i.loc)}: {i.message}" for i in self.issues))


def compile_policy(raw: Mapping[str, Any], *, source: str = "<memory>") -> Policy:
    """Check `raw` (a policy as parsed from YAML) and return its runtime form.

    Raises `PolicyIssues` listing every problem found, each with its field path.
    """
    spec = _validate(raw)
    issues: list[Issue] = []
    policy = _build(spec, source, issues)
    if issues:
        raise PolicyIssues(issues)
    return policy


def _validate(raw: Mapping[str, Any]) -> PolicySpec:
    try:
        return PolicySpec.model_validate(raw)
    except ValidationError as exc:
        raise PolicyIssues([_issue(e) for e in exc.errors(include_url=False)]) from None


def _issue(error: ErrorDetails) -> Issue:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        allowed = fields_at(PolicySpec, loc[:-1])
        expected = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return Issue(loc, f"unknown field{expected}")
    if error["type"] == "missing":
        return Issue(loc, "required field is missing")
    return Issue(loc, error["msg"])


def _build(spec: PolicySpec, source: str, out: list[Issue]) -> Policy:
    settings = spec.model_dump(include=_SETTINGS, exclude_none=True)
    timeouts = Timeouts(**spec.timeouts.model_dump(exclude_none=True))
    models = {n: _model(n, m, out) for n, m in spec.models.items()}
    prices = Policy(models=models)
    aliases = compile_aliases(
        spec, prices.price_for, lambda loc, message: out.append(Issue(loc, message))
    )
    return Policy(
        **settings,
        trusted_proxies=parse_networks(spec.trusted_proxies),
        unknown_tenant=_unknown_tenant(spec, out),
        upstreams={n: _upstream(n, u, spec, timeouts, out) for n, u in spec.upstreams.items()},
        routes=_routes(spec, timeouts, out),
        models=models,
        plans={n: _plan(n, p, spec, out) for n, p in spec.plans.items()},
        tenants=_tenants(spec, out),
        timeouts=timeouts,
        limits=Limits(**spec.limits.model_dump(exclude_none=True)),
        reservations=_reservations(spec, timeouts, out),
        alerts=Alerts(
            _thresholds(spec.alerts.thresholds),
            tuple(Webhook(w.url, w.secret_env) for w in spec.alerts.webhooks),
        ),
        actions=_actions(spec, out),
        source=source,
        aliases=aliases,
    )


def _defined(kind: str, names: Mapping[str, object]) -> str:
    return f"defined {kind}: {', '.join(names)}" if names else f"no {kind} are defined"


def _unknown_tenant(spec: PolicySpec, out: list[Issue]) -> str | None:
    if spec.unknown_tenant == "deny":
        return None
    if spec.unknown_tenant not in spec.plans:
        defined = _defined("plans", spec.plans)
        message = f"{spec.unknown_tenant!r} is neither 'deny' nor a plan; {defined}"
        out.append(Issue(("unknown_tenant",), message))
    return spec.unknown_tenant


def _upstream(
    name: str, upstream: UpstreamSpec, spec: PolicySpec, base: Timeouts, out: list[Issue]
) -> Upstream:
    if spec.identity == "api_key":
        for index, path in enumerate(upstream.passthrough):
            if any(_overlaps(path, stored) for stored in STORED_OBJECT_PATHS):
                message = (
                    f"{path!r} reaches stored objects (files, batches, fine-tuning, threads, "
                    "stored responses, ...); with identity: api_key every tenant shares one "
                    "provider key, so one tenant could read or delete another's. Remove it, "
                    "or run one proxy per tenant with identity: header"
                )
                out.append(Issue(("upstreams", name, "passthrough", index), message))
    given = upstream.timeouts.model_dump(exclude_none=True) if upstream.timeouts else {}
    timeouts = dataclasses.replace(base, **given) if given else None
    auth = upstream.auth or ("api-key" if upstream.kind == "azure" else "bearer")
    return Upstream(
        name,
        upstream.base_url,
        upstream.api_key_env,
        auth,
        tuple(upstream.passthrough),
        timeouts,
        include_usage=upstream.include_usage,
        kind=upstream.kind,
        api_version=upstream.api_version,
    )


def _overlaps(path: str, prefix: str) -> bool:
    """True if `path` is `prefix`, lies under it, or contains it."""
    path, prefix = path.lower(), prefix.lower()
    return path == prefix or path.startswith(prefix + "/") or prefix.startswith(path + "/")


def _routes(spec: PolicySpec, timeouts: Timeouts, out: list[Issue]) -> tuple[Route, ...]:
    routes = []
    for index, route in enumerate(spec.routes):
        if route.upstream not in spec.upstreams:
            defined = _defined("upstreams", spec.upstreams)
            message = f"upstream {route.upstream!r} is not defined; {defined}"
            out.append(Issue(("routes", index, "upstream"), message))
        given = route.timeouts.model_dump(exclude_none=True) if route.timeouts else {}
        resolved = dataclasses.replace(timeouts, **given) if given else None
        routes.append(Route(route.model, route.upstream, resolved))
    return tuple(routes)


def _model(name: str, model: ModelSpec, out: list[Issue]) -> ModelPrice:
    loc: Loc = ("models", name)
    what = "price", "USD per 1M tokens"
    unit_input = _amount(model.input, USD_PLACES, (*loc, "input"), what, out)
    cached = unit_input
    if model.cached_input is not None:
        cached = _amount(model.cached_input, USD_PLACES, (*loc, "cached_input"), what, out)
        if model.cached_input > model.input:
            message = (
                f"cached_input ({model.cached_input}) is more than input ({model.input}); "
                "estimates price every prompt token as uncached, so that must be the dearer case"
            )
            out.append(Issue((*loc, "cached_input"), message))
    encoding = model.encoding or encoding_for_model(name)
    if encoding not in ENCODINGS:
        message = f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}"
        out.append(Issue((*loc, "encoding"), message))
    output = _amount(model.output, USD_PLACES, (*loc, "output"), what, out)
    writes = {
        kind: _amount(value, USD_PLACES, (*loc, kind), what, out)
        for kind in ("cache_write", "cache_write_1h")
        if (value := getattr(model, kind)) is not None
    }
    factor = Fraction(model.tokenizer_factor or 1)
    media: dict[str, Any] = {
        kind: _amount(value, USD_PLACES, (*loc, kind), what, out)
        for kind in ("audio_input", "audio_output", "image_input", "image_output")
        if (value := getattr(model, kind)) is not None
    }
    return ModelPrice(
        name,
        unit_input,
        cached,
        output,
        encoding,
        writes.get("cache_write"),
        factor,
        limit_field=model.limit_field or default_limit_field(name),
        reasoning=reasons_by_name(name) if model.reasoning is None else model.reasoning,
        cache_write_1h=writes.get("cache_write_1h"),
        **media,
        **compile_features(name, model, lambda at, message: out.append(Issue(at, message))),
    )


def _plan(name: str, plan: PlanSpec, spec: PolicySpec, out: list[Issue]) -> Plan:
    if name == "deny":
        message = "a plan cannot be called 'deny': unknown_tenant: deny refuses unknown tenants"
        out.append(Issue(("plans", name), message))
    budgets = _budgets(("plans", name, "budgets"), plan.budgets, out)
    action_budgets = _budgets(("plans", name, "action_budgets"), plan.action_budgets, out)
    given = plan.model_dump(
        include={"default_max_tokens", "default_max_tool_calls"}, exclude_none=True
    )

    def report(loc: Loc, message: str) -> None:
        out.append(Issue(loc, message))

    here: Loc = ("plans", name)
    quotas = compile_quotas((*here, "quotas"), plan.quotas, spec.models, report)
    degrade = compile_degrade(
        (*here, "degrade"), plan.degrade, tuple(budgets), quotas, spec.models, report
    )
    alerts = _thresholds((plan.alerts or spec.alerts).thresholds)
    return Plan(
        name,
        budgets,
        quotas=quotas,
        degrade=degrade,
        alerts=alerts,
        action_budgets=action_budgets,
        **given,
    )


def _budgets(
    loc: Loc, written: Mapping[str, BudgetSpec | ActionBudgetSpec], out: list[Issue]
) -> tuple[Budget, ...]:
    """One section of a plan's budgets (`budgets` or `action_budgets`), in LEVELS order."""
    budgets = [
        budget
        for level, spec in written.items()
        if (budget := _budget((*loc, level), level, spec, out)) is not None
    ]
    return tuple(sorted(budgets, key=lambda budget: LEVELS.index(budget.level)))


def _thresholds(written: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted(set(written)))


def _budget(
    loc: Loc, level: str, spec: BudgetSpec | ActionBudgetSpec, out: list[Issue]
) -> Budget | None:
    if isinstance(spec, BudgetSpec) and spec.unit in ACTION_UNITS:
        message = (
            f"{spec.unit} budgets are for actions, not LLM calls: move this budget to the "
            f"plan's action_budgets (a level may have a budget in each)"
        )
        out.append(Issue((*loc, "unit"), message))
    if level not in LEVELS:
        out.append(Issue(loc, f"unknown level {level!r}; levels are {', '.join(LEVELS)}"))
        return None
    period = spec.period or ("none" if level == "run" else "month")
    if level == "run" and period != "none":
        message = (
            f"a run budget has no period (got {period!r}): it lasts for the run, whose "
            "entries expire after reservations.run_idle_seconds. Remove 'period'"
        )
        out.append(Issue((*loc, "period"), message))
    places = USD_PLACES if spec.unit == "USD" else 0
    limit = _amount(spec.limit, places, (*loc, "limit"), ("limit", spec.unit), out)
    return Budget(level, limit, spec.unit, period)


def _actions(spec: PolicySpec, out: list[Issue]) -> dict[str, ActionPrice]:
    """`send_email: {RISK_POINTS: 50}`: each action is priced in exactly one action unit."""
    actions: dict[str, ActionPrice] = {}
    for name, prices in spec.actions.items():
        loc: Loc = ("actions", name)
        if not ACTION_NAME.fullmatch(name):
            message = (
                f"action name {name!r} is invalid: use 1 to 128 characters from "
                "A-Z, a-z, 0-9, '_', '.' and '-'"
            )
            out.append(Issue(loc, message))
        if len(prices) != 1:
            message = f"price the action in exactly one unit, e.g. {{{ACTION_UNITS[0]}: 50}}"
            out.append(Issue(loc, message))
        for unit, amount in prices.items():
            price = _action_price(name, unit, amount, (*loc, unit), out)
            if price is not None:
                actions[name] = price
    return actions


def _action_price(
    name: str, unit: str, amount: Decimal, loc: Loc, out: list[Issue]
) -> ActionPrice | None:
    if unit not in ACTION_UNITS:
        message = (
            f"{unit!r} is not an action unit; actions are priced in {', '.join(ACTION_UNITS)} "
            "(LLM calls are priced by models:)"
        )
        out.append(Issue(loc, message))
        return None
    try:
        units = to_units(amount, 0, "price", unit)
    except AmountError as exc:
        out.append(Issue(loc, str(exc)))
        return None
    if units == 0:
        out.append(Issue(loc, "an action must cost at least 1; a free action needs no budget"))
        return None
    return ActionPrice(name, unit, units)


def _tenants(spec: PolicySpec, out: list[Issue]) -> dict[str, TenantSeed]:
    seeds: dict[str, TenantSeed] = {}
    for written, tenant in spec.tenants.items():
        loc: Loc = ("tenants", written)
        problem = _tenant_id_problem(written, seeds)
        if problem is not None:
            out.append(Issue(loc, problem))
        if tenant.plan not in spec.plans:
            defined = _defined("plans", spec.plans)
            message = f"plan {tenant.plan!r} is not defined; {defined}"
            out.append(Issue((*loc, "plan"), message))
        alerts = None if tenant.alerts is None else _thresholds(tenant.alerts.thresholds)
        seeds[written.lower()] = TenantSeed(written.lower(), tenant.plan, tenant.mode, alerts)
    return seeds


def _tenant_id_problem(written: str, seen: Mapping[str, object]) -> str | None:
    if not TENANT_ID.fullmatch(written):
        return (
            f"tenant id {written!r} is invalid: use 1 to 128 characters from "
            "A-Z, a-z, 0-9, '_', '.' and '-'"
        )
    if written.lower() in seen:
        return (
            f"tenant id {written!r} is {written.lower()!r} once lowercased, which is already "
            "declared; tenant ids are case-insensitive"
        )
    return None


def _reservations(spec: PolicySpec, timeouts: Timeouts, out: list[Issue]) -> ReservationSettings:
    given = spec.reservations.model_dump(exclude_none=True)
    settings = ReservationSettings(
        **{_MS_FIELDS.get(k, k): v * 1000 if k in _MS_FIELDS else v for k, v in given.items()}
    )
    issues = lifetimes.check(spec, timeouts, settings, given)
    out.extend(Issue(loc, message) for loc, message in issues)
    return settings


def _amount(value: Decimal, places: int, loc: Loc, what: tuple[str, str], out: list[Issue]) -> int:
    """`value` in integer units, or an issue (and 0)."""
    try:
        return to_units(value, places, *what)
    except AmountError as exc:
        out.append(Issue(loc, str(exc)))
        return 0
