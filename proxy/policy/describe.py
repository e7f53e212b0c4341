"""A policy in words: what `cycles-proxy check` prints, so an operator can read what will be
enforced before it is."""

from __future__ import annotations

from decimal import Decimal

from proxy.core.types import UNITS_PER_USD
from proxy.policy.advice import warnings
from proxy.policy.describe_mcp import mcp_section
from proxy.policy.prices import ModelPrice
from proxy.policy.runtime import Budget, DegradeRule, Plan, PlanQuotas, Policy
from proxy.policy.upstreams import Alias

_INDENT = "  "


def describe(policy: Policy) -> str:
    """A human-readable summary of everything `policy` would enforce."""
    sections = [
        *([[f"WARNING: {text}" for text in warnings(policy)]] if warnings(policy) else []),
        _settings(policy),
        _upstreams(policy),
        _models(policy),
        _plans(policy),
        _actions(policy),
        *([mcp_section(policy, _amount)] if policy.mcp_servers else []),
        _tenants(policy),
        _operations(policy),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def usd(units: int) -> str:
    """Integer units as dollars, exactly, with at least two decimals: 7500000 → '0.075'."""
    whole, _, fraction = f"{Decimal(units) / UNITS_PER_USD:f}".partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def _settings(policy: Policy) -> list[str]:
    unknown = (
        "denied (403)"
        if policy.unknown_tenant is None
        else f"admitted on plan {policy.unknown_tenant}"
    )
    bound = {
        "hard": "the proxy writes a completion limit when a request has none",
        "soft": "requests without a completion limit are reserved at the plan's "
        "default_max_tokens but not capped, so spend can overshoot",
    }[policy.bound]
    return [
        f"Policy from {policy.source}",
        f"{_INDENT}mode: {policy.mode}    identity: {policy.identity}    "
        f"fail_mode: {policy.fail_mode}    bound: {policy.bound}",
        f"{_INDENT}unknown tenants: {unknown}",
        f"{_INDENT}bound {policy.bound}: {bound}",
        f"{_INDENT}request_fields {policy.request_fields}: {_FIELDS[policy.request_fields]}",
        f"{_INDENT}client address: {_client_address(policy)}",
        f"{_INDENT}end user ids: {_user_ids(policy)}",
    ]


def _user_ids(policy: Policy) -> str:
    if policy.user_ids == "plain":
        return "kept as sent (user_ids: plain)"
    return (
        f"kept as an HMAC-SHA256 keyed by ${policy.user_id_secret_env} (user_ids: hash); the "
        "proxy refuses to start without it"
    )


def _client_address(policy: Policy) -> str:
    ipv6 = f"; IPv6 clients counted by /{policy.client_ipv6_prefix}"
    if not policy.trusted_proxies:
        return f"the TCP peer (no trusted_proxies){ipv6}"
    networks = ", ".join(str(network) for network in policy.trusted_proxies)
    return f"{policy.forwarded_header} from trusted proxies {networks}, else the TCP peer{ipv6}"


_FIELDS = {
    "strict": "a field the proxy cannot price is refused (400 unpriced_feature)",
    "forward": "fields the proxy cannot price are forwarded; such calls may exceed their estimate",
}


def _upstreams(policy: Policy) -> list[str]:
    lines = ["Upstreams"]
    for upstream in policy.upstreams.values():
        key = f"key from ${upstream.api_key_env}" if upstream.api_key_env else "no API key"
        if upstream.api_key_env and upstream.auth != "bearer":
            key += f" as {upstream.auth}"
        kind = "" if upstream.kind == "openai" else f"{upstream.kind} "
        lines.append(f"{_INDENT}{upstream.name}: {kind}{upstream.base_url} ({key})")
        if upstream.api_version:
            version = upstream.api_version
            lines.append(f"{_INDENT * 2}api-version {version} when the client names none")
        if not upstream.include_usage:
            lines.append(
                f"{_INDENT * 2}no stream_options sent: streams settle on self-reported or "
                "counted usage"
            )
        lines += [
            f"{_INDENT * 2}{_alias(name, alias)}"
            for name, alias in sorted(policy.aliases.items())
            if alias.upstream == upstream.name
        ]
        if upstream.passthrough:
            lines.append(f"{_INDENT * 2}passthrough, unbudgeted: {', '.join(upstream.passthrough)}")
    lines.append("Routes (first match wins)")
    for route in policy.routes:
        lines.append(f"{_INDENT}{route.model} → {route.upstream}")
        if route.timeouts is not None:
            t = route.timeouts
            lines.append(
                f"{_INDENT * 2}timeouts (s): connect {t.connect:g}, first_byte {t.first_byte:g}, "
                f"chunk_idle {t.chunk_idle:g}, stream_total {t.stream_total:g}, "
                f"non_stream_answer {t.non_stream_answer:g}"
            )
    if not policy.routes:
        lines.append(f"{_INDENT}none: every model request is refused")
    return lines


def _alias(name: str, alias: Alias) -> str:
    priced = "" if alias.price == name else f", priced as {alias.price}"
    served = alias.served
    factor = None if served is None else served.image_token_factor
    if factor is not None:
        priced += (
            f"; image tokens ×{float(factor):.4g}, the rule published for {alias.send}, "
            f"not {alias.price}'s"
        )
    elif served is not None:
        priced += (
            f"; images refused: no image rule known for {alias.send}; write image_token_factor "
            f"on models.{served.name} (the most {alias.send} bills an image, over the proxy's rule)"
        )
    return f"{name} → sent as {alias.send}{priced}"


def _models(policy: Policy) -> list[str]:
    lines = [
        "Models (USD per 1M tokens: input / cached input / output; exact names, dated snapshots)",
        f"{_INDENT}refused (400 unpriced_feature) unless priced below: service tiers, hosted "
        "tools, documents, long-context betas",
    ]
    width = max((len(name) for name in policy.models), default=0)
    for price in policy.models.values():
        lines.append(
            f"{_INDENT}{price.name:<{width}}  {usd(price.input)} / {usd(price.cached_input)} / "
            f"{usd(price.output)}  ({price.encoding}){_model_extras(price)}"
        )
        lines += [f"{_INDENT * 3}{line}" for line in _billables(price)]
    if not policy.models:
        lines.append(f"{_INDENT}none: every request is refused, as no model has a price")
    return lines


def _billables(price: ModelPrice) -> list[str]:
    """What a model prices besides its tokens, one line each."""
    lines = []
    if price.service_tiers:
        tiers = ", ".join(f"{t} ×{float(f):g}" for t, f in price.service_tiers.items())
        dearest = max(price.service_tiers.items(), key=lambda tier: tier[1])
        auto = dearest[0] if dearest[1] > 1 else "the standard tier"
        lines.append(f"service tiers: {tiers} (auto and no tier reserve {auto})")
    if price.tool_calls:
        tools = ", ".join(
            f"{tool} {usd(fee.per_call)}"
            + (f" + {fee.input_tokens:,} input tokens" if fee.input_tokens else "")
            for tool, fee in price.tool_calls.items()
        )
        lines.append(f"hosted tools, USD per call: {tools}")
    long = price.long_context
    if long is not None:
        write = "" if long.cache_write is None else f"; cache_write {usd(long.cache_write)}"
        if long.cache_write_1h is not None:
            write += f"; cache_write_1h {usd(long.cache_write_1h)}"
        lines.append(
            f"prompt above {long.above:,} tokens: {usd(long.input)} / {usd(long.cached_input)} "
            f"/ {usd(long.output)}{write}"
        )
    if price.document_tokens is not None:
        lines.append(f"documents: {price.document_tokens:,} prompt tokens reserved each")
    if price.tool_prompt_tokens:
        lines.append(f"tool prompt: {price.tool_prompt_tokens:,} tokens on a call with tools")
    if price.client_tool_tokens:
        tools = ", ".join(f"{kind} {n:,}" for kind, n in sorted(price.client_tool_tokens.items()))
        lines.append(f"client tools, prompt tokens each: {tools}")
    return lines


def _model_extras(price: ModelPrice) -> str:
    """What a model prices or sends apart from the usual, e.g. `; limit max_completion_tokens`."""
    extras = []
    for kind in ("cache_write", "audio_input", "audio_output", "image_input", "image_output"):
        value = getattr(price, kind)
        if value is not None:
            extras.append(f"{kind} {usd(value)}")
        if kind == "cache_write" and value is not None:
            extras.append(f"cache_write_1h {usd(price.hour_write)}")
    if price.tokenizer_factor != 1:
        extras.append(f"tokenizer ×{float(price.tokenizer_factor):g}")
    if price.image_token_factor is None:
        extras.append("images refused (no image_token_factor)")
    elif price.image_token_factor != 1:
        extras.append(f"image tokens ×{float(price.image_token_factor):g}")
    if price.limit_field is not None:
        extras.append(f"limit {price.limit_field}")
    if price.reasoning:
        extras.append("reasoning: a stream without usage is charged its reservation")
    return "; " + ", ".join(extras) if extras else ""


def _plans(policy: Policy) -> list[str]:
    lines = ["Plans"]
    for plan in policy.plans.values():
        lines += _plan(plan)
    if not policy.plans:
        lines.append(f"{_INDENT}none")
    return lines


def _plan(plan: Plan) -> list[str]:
    lines = [
        f"{_INDENT}{plan.name} (default max_tokens {plan.default_max_tokens}, "
        f"hosted tool calls {plan.default_max_tool_calls})"
    ]
    lines += [f"{_INDENT * 2}{budget.level:<9}  {_budget(budget)}" for budget in plan.budgets]
    if not plan.budgets:
        lines.append(f"{_INDENT * 2}no budgets: spending is recorded but never limited")
    lines += [
        f"{_INDENT * 2}{budget.level:<9}  {_budget(budget)} (actions)"
        for budget in plan.action_budgets
    ]
    lines += [f"{_INDENT * 2}{line}" for line in _quotas(plan.quotas)]
    lines += [f"{_INDENT * 2}{rule.name}: {_rule(rule, plan)}" for rule in plan.degrade]
    return lines


def _quotas(q: PlanQuotas) -> list[str]:
    counts = [
        f"{name.replace('_', ' ')} {value:,}"
        for name in ("runs_per_day", "steps_per_run", "requests_per_minute", "tokens_per_minute")
        if (value := getattr(q, name)) is not None
    ]
    counts += [f"{limit} concurrent per {level}" for level, limit in q.concurrent_requests]
    counts += [
        f"{limit:,} requests a minute per {level}" for level, limit in q.level_requests_per_minute
    ]
    if q.max_tokens_per_request is not None:
        counts.append(f"max_tokens capped at {q.max_tokens_per_request:,}")
    lines = [f"quotas: {'; '.join(counts)}"] if counts else []
    if q.models is not None:
        lines.append(f"models allowed: {', '.join(q.models)}")
    if q.tools is not None:
        lines.append(f"MCP tools allowed: {', '.join(q.tools) or 'none'}")
    return lines


def _rule(rule: DegradeRule, plan: Plan) -> str:
    if rule.kind == "remaining_below":
        if rule.below_fraction is not None:
            numerator, denominator = rule.below_fraction
            below = f"{Decimal(numerator * 100) / denominator:f}%"
        else:
            budget = plan.budget_for(rule.level or "")
            amount = rule.below_amount or 0
            below = _amount(amount, budget.unit if budget else "TOKENS")
        each = " on any of its budgets" if rule.hide_tools and rule.below_fraction else ""
        when = f"when {rule.level} has less than {below} left{each}"
    else:
        when = {
            "not_fit": "when the call as asked does not fit",
            "model_not_allowed": "when the asked model is not allowed",
        }[rule.kind]
    if rule.only_models:
        when += f" (asked model {' or '.join(rule.only_models)})"
    actions = []
    if rule.model is not None:
        actions.append(f"switch to {rule.model}")
    if rule.max_tokens is not None:
        actions.append(f"cap max_tokens at {rule.max_tokens:,}")
    if rule.fit_floor is not None:
        actions.append(f"cap the completion to what fits (at least {rule.fit_floor:,} tokens)")
    if rule.hide_tools:
        actions.append(f"hide MCP tools {', '.join(rule.hide_tools)} (LLM calls unchanged)")
    return f"{when}: {', '.join(actions)}"


def _amount(units: int, unit: str) -> str:
    if unit == "USD":
        return f"{usd(units)} USD"
    return f"{units:,} tokens" if unit == "TOKENS" else f"{units:,} {unit}"


def _budget(budget: Budget) -> str:
    amount = _amount(budget.limit, budget.unit)
    each = " for each end user" if budget.level == "user" else ""
    if budget.period != "none":
        return f"{amount} per {budget.period}{each}"
    if budget.level == "run":
        return f"{amount} per run"
    return f"{amount} in total{each} (no period)"


def _actions(policy: Policy) -> list[str]:
    lines = ["Actions (POST /v1/cycles/reservations)"]
    width = max((len(name) for name in policy.actions), default=0)
    for price in policy.actions.values():
        lines.append(f"{_INDENT}{price.name:<{width}}  {_amount(price.amount, price.unit)}")
    if not policy.actions:
        lines.append(f"{_INDENT}none named: reservations give a unit and an amount")
    return lines


def _tenants(policy: Policy) -> list[str]:
    lines = ["Tenants (seeds: the store's state wins once it has the tenant)"]
    width = max((len(tenant) for tenant in policy.tenants), default=0)
    for seed in policy.tenants.values():
        mode = f" ({seed.mode})" if seed.mode is not None and seed.mode != policy.mode else ""
        lines.append(f"{_INDENT}{seed.id:<{width}}  {seed.plan}{mode}")
    if not policy.tenants:
        lines.append(f"{_INDENT}none declared")
    return lines


def _operations(policy: Policy) -> list[str]:
    t, limits, r = policy.timeouts, policy.limits, policy.reservations
    overrides = "".join(f", {path} {size}" for path, size in limits.route_body_bytes.items())
    return [
        f"Timeouts (s): read_request {t.read_request:g}, connect {t.connect:g}, "
        f"first_byte {t.first_byte:g}, chunk_idle {t.chunk_idle:g},",
        f"{_INDENT}stream_total {t.stream_total:g}, client_write {t.client_write:g}, "
        f"drain_after_disconnect {t.drain_after_disconnect:g}, "
        f"non_stream_answer {t.non_stream_answer:g}",
        f"Body limits (bytes): {limits.max_body_bytes}{overrides}; tokenized up to "
        f"{limits.tokenize_max_bytes}, byte-count bound above; whole answers up to "
        f"{limits.max_answer_bytes}",
        f"Reservations (s): cap {r.cap_ms // 1000}, tombstone {r.tombstone_ms // 1000}, run idle "
        f"{r.run_idle_ms // 1000}, user idle {r.user_idle_ms // 1000}, period grace "
        f"{r.period_grace_ms // 1000}; "
        f"on expiry: {r.on_expiry}",
        f"History: each day's rollups kept {r.history_retention_ms // 86_400_000} days, "
        f"{r.history_values_per_level} values per structural level",
    ]
