"""From a parsed request body to the priced forms of a call, ready to reserve. No I/O.

A call has one or more variants: the call as asked (capped by `max_tokens_per_request`, and
bounded by `bound: hard`), then one per degrade rule of the plan that could apply to it (a
cheaper model, a smaller completion, or a completion fitted to what remains). Each is priced in
budget/variants.py; the ledger's reserve script picks the first that applies and fits,
atomically. `Sent` is what finally goes upstream. The endpoints live in budget/endpoints.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.budget.endpoints import Endpoint
from proxy.budget.variants import Pricer, Variant, plan_allows, price_of
from proxy.core.errors import BadRequest, Forbidden, NotFound
from proxy.metering import billable, billable_reserve
from proxy.metering.estimate import choices, completion_limit
from proxy.metering.message_fields import check_entries
from proxy.metering.pricing import Usage, ceil_times
from proxy.metering.request_body import client_asked_usage, parse_body, require_model, stream_flag
from proxy.metering.request_fields import check_fields
from proxy.metering.shapes import azure
from proxy.metering.token_kinds import estimate_price
from proxy.policy.model_rules import chat_limit_field
from proxy.policy.prices import ModelPrice
from proxy.policy.runtime import Plan, Policy
from proxy.policy.upstreams import Timeouts, Upstream


@dataclass(frozen=True, slots=True)
class Sent:
    """What actually goes upstream, for relaying and settling."""

    endpoint: Endpoint
    upstream: Upstream
    model: str
    price: ModelPrice
    reserved_price: ModelPrice
    """`price` raised to the media and cache-write prices the call may be billed at
    (token_kinds.estimate_price), as it was reserved: what a call without a usage report is
    charged at, since nothing says which of them the provider billed."""
    prompt_tokens: int
    body: bytes
    stream: bool
    hide_usage_chunk: bool
    timeouts: Timeouts
    """Those of the sent model's route (the policy's, unless the route overrides them)."""
    path: str = ""
    """Below the upstream's base URL: the endpoint's suffix, or an Azure deployment path."""
    tool_calls: tuple[tuple[str, int], ...] = ()
    """The hosted tool calls reserved, by tool (Variant.tool_calls)."""
    cache_writes: tuple[int, int] = (0, 0)
    """Prompt tokens reserved as 5-minute and one-hour cache writes (Variant.cache_writes)."""
    completion_bound: int | None = None
    """The most completion tokens the provider may bill: the limit sent times the choices;
    None when no limit goes up."""

    def scaled_count(self, counted: int) -> int:
        """Completion tokens counted in the encoding, scaled to the model's own tokenizer (as
        the estimate is), for a call without a usage report. The scaling is an estimate, and
        never carries the count past the bound sent, which the provider's own count cannot
        pass; text counted past it unscaled (an upstream that ignored the limit) still is."""
        scaled = ceil_times(counted, self.price.tokenizer_factor)
        if self.completion_bound is None:
            return scaled
        return max(counted, min(scaled, self.completion_bound))

    def unreported_usage(self, completion: int) -> Usage:
        """What a call the provider sent no usage report for is charged for, with `completion`
        tokens counted from its text: the prompt, its cache writes and its hosted tool calls as
        reserved. Nothing in an answer without a report says how many tool calls ran or what
        the cache wrote, and the provider may bill up to what was reserved for them."""
        five, hour = self.cache_writes
        return Usage(
            self.prompt_tokens,
            completion,
            cache_write_tokens=five,
            cache_write_1h_tokens=hour,
            tool_calls=self.tool_calls,
        )


@dataclass(frozen=True, slots=True)
class PreparedCall:
    endpoint: Endpoint
    upstream: Upstream
    body: dict[str, Any]
    raw: bytes
    stream: bool
    hide_usage_chunk: bool
    """We ask for include_usage on the client's behalf; its chunk is not relayed."""
    choices: int
    asked_allowed: bool
    """The plan allows the asked model (otherwise only model_not_allowed rules can serve it)."""
    variants: tuple[Variant, ...]
    forced: dict[str, Any] = field(default_factory=dict)
    """Changes every form of the call carries, shadow mode included (gateway_rules)."""
    api_version: str | None = None
    """An Azure upstream's api-version: the client's, else the upstream's."""

    @property
    def asked(self) -> Variant:
        return self.variants[0]

    @property
    def model(self) -> str:
        return self.asked.model

    def send(self, variant: Variant, *, fitted: int | None, rewrite: bool) -> Sent:
        """The request for `variant` (with the completion `fitted` by the ledger, if any).
        `rewrite=False` (shadow mode) sends the call as asked, touched only to ask for usage
        and to follow the model's request rules (policy/model_rules.py)."""
        if not rewrite:
            variant = self.asked
        changes: dict[str, Any] = {**self.forced, **variant.writes}
        wire = variant.wire_model or variant.model
        # Azure reads the model from the path; a body that names none keeps naming none.
        if wire != self.body.get("model") and ("model" in self.body or not self._azure):
            changes["model"] = wire
        limit = fitted if fitted is not None else variant.limit
        field, others = self._limit_fields(variant.price)
        if not rewrite or limit is None:
            # The limit the client sent (the smaller of two), in the field the model takes.
            limit = completion_limit(self.body, self.endpoint.name)
        if field is not None and limit is not None and limit != self.body.get(field):
            changes[field] = limit
        bound = None if field is None or limit is None else limit * self.choices
        if self.hide_usage_chunk:
            changes["stream_options"] = {
                **(self.body.get("stream_options") or {}),
                "include_usage": True,
            }
        return Sent(
            self.endpoint,
            self.upstream,
            variant.model,
            variant.price,
            estimate_price(variant.price, self.body, self.endpoint.name),
            variant.prompt_tokens,
            self._body(changes, others + self._refused_options()),
            self.stream,
            self.hide_usage_chunk,
            variant.timeouts,
            self._path(wire),
            variant.tool_calls,
            variant.cache_writes,
            bound,
        )

    @property
    def _azure(self) -> bool:
        return self.upstream.kind == "azure"

    def _path(self, wire: str) -> str:
        if not self._azure:
            return self.endpoint.suffix
        suffix = self.endpoint.suffix
        return azure.upstream_path(wire, suffix, self.api_version, self.upstream.name)

    def _limit_fields(self, price: ModelPrice) -> tuple[str | None, tuple[str, ...]]:
        """The field a limit is written in, and the other limit fields of the body, which are
        taken out: the one field that goes up holds the bound the call was reserved at."""
        field = self.endpoint.limit_field
        if self.endpoint.name == "chat":
            field = chat_limit_field(self.body, price.limit_field)
        return field, tuple(f for f in ANY_LIMIT_FIELD if f != field and f in self.body)

    def _refused_options(self) -> tuple[str, ...]:
        """`stream_options` (the client's too) for an upstream that refuses it: its stream is
        settled from usage it reports by itself, else from the counted text."""
        refused = not self.upstream.include_usage and "stream_options" in self.body
        return ("stream_options",) if refused else ()

    def _body(self, changes: dict[str, Any], removed: tuple[str, ...]) -> bytes:
        if not changes and not removed:
            return self.raw
        body = {**self.body, **changes}
        for name in removed:
            body.pop(name, None)
        return orjson.dumps(body)


ANY_LIMIT_FIELD = ("max_tokens", "max_completion_tokens", "max_output_tokens")
"""Completion limits of every API: a server may read one its API does not list (forwarded with
`request_fields: forward`), so only the one the proxy writes goes up."""


def prepare(
    policy: Policy, plan: Plan, endpoint: Endpoint, raw: bytes, *, shadow: bool
) -> PreparedCall:
    """Validate the request and price every form it could be served in."""
    body = parse_body(raw)
    model = _deployment(policy, endpoint) if endpoint.deployment else require_model(body)
    price = price_of(policy, model)
    upstream, api_version = _route(policy, endpoint, model)
    stream = stream_flag(body, endpoint.name)
    rules = endpoint.gateway_rules if policy.identity == "api_key" else None
    forced = rules(body) if rules is not None else {}
    check_fields(body, endpoint.name, policy.request_fields)
    check_entries(body, endpoint.name, policy.request_fields)
    billables = billable.read(endpoint.name, body, endpoint.betas, plan.default_max_tool_calls)
    refused = billable_reserve.refusal(model, price, billables)
    if refused is not None:
        raise refused
    bound = policy.bound == "hard" and not shadow
    if bound:
        forced = {**forced, **billables.limits}
    pricer = Pricer(
        policy, plan, endpoint, body, choices(body, endpoint.name), billables, bound=bound
    )
    allowed = plan_allows(policy, plan, model)
    variants = _variants(pricer, plan, upstream, model, price, allowed=allowed, bound=bound)
    return PreparedCall(
        endpoint=endpoint,
        upstream=upstream,
        body=body,
        raw=raw,
        stream=stream,
        hide_usage_chunk=stream
        and endpoint.asks_usage
        and upstream.include_usage
        and not client_asked_usage(body),
        choices=pricer.choices,
        asked_allowed=allowed,
        variants=variants,
        forced=forced,
        api_version=api_version,
    )


def _route(policy: Policy, endpoint: Endpoint, model: str) -> tuple[Upstream, str | None]:
    """The upstream serving `model` and the api-version sent to it (an Azure path's, else the
    upstream's); a 400 when no route serves the model or its Azure path cannot be built."""
    upstream = policy.upstream_for(model)
    if upstream is None:
        raise BadRequest(
            f"No route in the policy serves model {model!r}.", code="no_route", param="model"
        )
    api_version = endpoint.api_version or upstream.api_version
    if upstream.kind == "azure":
        azure.upstream_path(model, endpoint.suffix, api_version, upstream.name)  # 400 if bad
    return upstream, api_version


def _variants(
    pricer: Pricer,
    plan: Plan,
    upstream: Upstream,
    model: str,
    price: ModelPrice,
    *,
    allowed: bool,
    bound: bool,
) -> tuple[Variant, ...]:
    """The call as asked, then the form of each degrade rule that applies to it; a 403 when
    the plan does not allow the asked model and no rule serves it."""
    asked = pricer.asked(model, price, bound=bound)
    degraded = [
        variant
        for rule in plan.call_rules
        if (variant := pricer.degraded(rule, asked, upstream, asked_allowed=allowed)) is not None
    ]
    if not allowed and not degraded:
        raise Forbidden(
            f"Model {model!r} is not allowed on plan {plan.name!r}; allowed: "
            f"{', '.join(plan.quotas.models or ())}.",
            type="model_not_allowed",
        )
    return (asked, *degraded)


def _deployment(policy: Policy, endpoint: Endpoint) -> str:
    """An Azure path's deployment, which must be one an Azure upstream lists."""
    deployment = endpoint.deployment or ""
    alias = policy.aliases.get(deployment)
    if alias is None or policy.upstreams[alias.upstream].kind != "azure":
        raise NotFound(
            f"No Azure upstream in the policy lists deployment {deployment!r}; ask the operator "
            "to add it under the upstream's `deployments:`.",
            code="deployment_not_found",
        )
    return deployment
