"""A raw policy (what the operator wrote) → the checked runtime form.

`compile_policy` validates a mapping against `spec.PolicySpec`, checks what spans sections (a
route's upstream, a tenant's plan, stored-object passthrough in gateway mode), converts every price
and limit from the Decimal the operator wrote into integer units, and returns a frozen
`runtime.Policy`. Every problem is collected with the field path at fault, so the loader can name
the file and line of each; nothing here reads files. A plan's budgets and the actions' prices are
compiled in budgets.py; the issues are issues.py's.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from proxy.core.encodings import encoding_for_model
from proxy.core.peers import parse_networks
from proxy.core.types import ReservationSettings
from proxy.policy import lifetimes
from proxy.policy.aliases import compile_aliases
from proxy.policy.budgets import compile_actions, compile_plan, thresholds
from proxy.policy.features import compile_features
from proxy.policy.fields import fields_at
from proxy.policy.issues import Issue, Loc, PolicyIssues, units_or_issue
from proxy.policy.mcp import compile_servers
from proxy.policy.model_rules import default_limit_field, reasons_by_name
from proxy.policy.prices import ModelPrice
from proxy.policy.runtime import (
    ENCODINGS,
    Alerts,
    Limits,
    Policy,
    TenantSeed,
    Webhook,
)
from proxy.policy.sinks import compile_events
from proxy.policy.spec import PolicySpec
from proxy.policy.spec_models import ModelSpec
from proxy.policy.spec_upstreams import UpstreamSpec
from proxy.policy.units import USD_PLACES
from proxy.policy.upstreams import Route, Timeouts, Upstream

DAY_MS = 86_400_000

TENANT_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
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
    "user_ids",
    "user_id_secret_env",
}
_MS_FIELDS = {
    name: name.replace("_seconds", "_ms")
    for name in (
        "cap_seconds",
        "tombstone_seconds",
        "run_idle_seconds",
        "user_idle_seconds",
        "period_grace_seconds",
        "audit_retention_seconds",
    )
}


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
    servers = compile_servers(spec, out)
    actions, tool_prices = compile_actions(spec, servers, out)
    return Policy(
        **settings,
        trusted_proxies=parse_networks(spec.trusted_proxies),
        unknown_tenant=_unknown_tenant(spec, out),
        upstreams={n: _upstream(n, u, spec, timeouts, out) for n, u in spec.upstreams.items()},
        routes=_routes(spec, timeouts, out),
        models=models,
        plans={n: compile_plan(n, p, spec, out) for n, p in spec.plans.items()},
        tenants=_tenants(spec, out),
        timeouts=timeouts,
        limits=Limits(**spec.limits.model_dump(exclude_none=True)),
        reservations=_reservations(spec, timeouts, out),
        alerts=Alerts(
            thresholds(spec.alerts.thresholds),
            tuple(Webhook(w.url, w.secret_env) for w in spec.alerts.webhooks),
        ),
        events=compile_events(spec, out),
        actions=actions,
        mcp_servers=servers,
        tool_prices=tool_prices,
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
    unit_input = units_or_issue(model.input, USD_PLACES, (*loc, "input"), what, out)
    cached = unit_input
    if model.cached_input is not None:
        cached = units_or_issue(model.cached_input, USD_PLACES, (*loc, "cached_input"), what, out)
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
    output = units_or_issue(model.output, USD_PLACES, (*loc, "output"), what, out)
    writes = {
        kind: units_or_issue(value, USD_PLACES, (*loc, kind), what, out)
        for kind in ("cache_write", "cache_write_1h")
        if (value := getattr(model, kind)) is not None
    }
    factor = Fraction(model.tokenizer_factor or 1)
    media: dict[str, Any] = {
        kind: units_or_issue(value, USD_PLACES, (*loc, kind), what, out)
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
        alerts = None if tenant.alerts is None else thresholds(tenant.alerts.thresholds)
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
        **{_MS_FIELDS.get(k, k): v * 1000 if k in _MS_FIELDS else v for k, v in given.items()},
        history_retention_ms=spec.history.retention_days * DAY_MS,
        history_values_per_level=spec.history.values_per_level,
    )
    issues = lifetimes.check(spec, timeouts, settings, given)
    out.extend(Issue(loc, message) for loc, message in issues)
    return settings
