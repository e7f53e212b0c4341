"""From a parsed request body to the priced forms of a call, ready to reserve. No I/O.

A call has one or more variants: the call as asked (capped by `max_tokens_per_request`, and
bounded by `bound: hard`), then one per degrade rule of the plan that could apply to it (a
cheaper model, a smaller completion, or a completion fitted to what remains). Each is priced here;
the ledger's reserve script picks the first that applies and fits, atomically. `Sent` is what
finally goes upstream.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.core import encodings
from proxy.core.errors import BadRequest, Forbidden, NotFound
from proxy.core.types import MAX_AMOUNT
from proxy.metering import billable, caching
from proxy.metering.estimate import (
    EndpointName,
    Estimate,
    choices,
    completion_limit,
    estimate_chat,
    estimate_completions,
    estimate_embeddings,
)
from proxy.metering.message_fields import check_entries
from proxy.metering.pricing import Usage, amounts
from proxy.metering.request_body import client_asked_usage, parse_body, require_model, stream_flag
from proxy.metering.request_fields import check_fields
from proxy.metering.shapes import azure, messages, responses
from proxy.metering.token_kinds import estimate_price
from proxy.metering.usage import StreamUsage, usage_from_body
from proxy.policy.model_rules import chat_limit_field
from proxy.policy.runtime import DegradeRule, ModelPrice, Plan, Policy, Timeouts, Upstream

Estimator = Callable[..., Estimate]


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: EndpointName
    suffix: str
    """Path below the upstream's base URL."""
    estimator: Estimator
    limit_field: str | None
    """The field a bound or cap writes when the client sent no completion limit."""
    usage: Callable[[Mapping[str, Any]], Usage | None]
    """The usage a whole (non-streamed) answer reports."""
    tracker: Callable[[], StreamUsage] = StreamUsage
    """Follows a stream of this endpoint for its usage and text."""
    asks_usage: bool = True
    """Streams report usage only when asked (`stream_options.include_usage`)."""
    gateway_rules: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    """With identity: api_key, what the body must change (or a 400) for tenants that share
    one provider account."""
    deployment: str | None = None
    """Set per request on an Azure deployment path: the deployment, which names the model."""
    api_version: str | None = None
    """Set per request on an Azure deployment path: its `api-version` query parameter."""
    betas: tuple[str, ...] = ()
    """Set per request: the `anthropic-beta` values sent (one may enable long-context prices)."""


ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": Endpoint(
        "chat",
        "/chat/completions",
        estimate_chat,
        "max_completion_tokens",
        lambda obj: usage_from_body(obj, "chat"),
    ),
    "/v1/completions": Endpoint(
        "completions",
        "/completions",
        estimate_completions,
        "max_tokens",
        lambda obj: usage_from_body(obj, "completions"),
    ),
    "/v1/embeddings": Endpoint(
        "embeddings",
        "/embeddings",
        estimate_embeddings,
        None,
        lambda obj: usage_from_body(obj, "embeddings"),
    ),
    "/v1/responses": Endpoint(
        "responses",
        "/responses",
        responses.estimate_responses,
        "max_output_tokens",
        responses.usage_of_response,
        responses.ResponsesStreamUsage,
        asks_usage=False,
        gateway_rules=responses.gateway_rules,
    ),
    "/v1/messages": Endpoint(
        "messages",
        "/messages",
        messages.estimate_messages,
        "max_tokens",
        messages.usage_of_message,
        messages.MessagesStreamUsage,
        asks_usage=False,
    ),
}


def endpoint_for(
    path: str, query: Mapping[str, str], headers: Mapping[str, str] | None = None
) -> Endpoint | None:
    """The endpoint serving `path`: an OpenAI path, or an Azure deployment path (the endpoint
    of its operation, carrying the deployment and api-version); with the `anthropic-beta`
    values of `headers`."""
    endpoint = ENDPOINTS.get(path)
    if endpoint is None:
        found = azure.parse_path(path)
        if found is None:
            return None
        deployment, openai_path = found
        endpoint = dataclasses.replace(
            ENDPOINTS[openai_path], deployment=deployment, api_version=query.get("api-version")
        )
    if headers is None or "anthropic-beta" not in headers:
        return endpoint
    # Every `anthropic-beta` line counts: all of them go upstream.
    sent = [v for k, v in headers.items() if k.lower() == "anthropic-beta"]
    betas = tuple(b.strip() for value in sent for b in value.split(",") if b.strip())
    return dataclasses.replace(endpoint, betas=betas) if betas else endpoint


@dataclass(frozen=True, slots=True)
class Variant:
    """One form of the call: as asked (`rule` None) or rewritten by a degrade rule."""

    rule: DegradeRule | None
    model: str
    price: ModelPrice
    limit: int | None
    """Completion tokens per choice to send; None leaves the client's (absent) limit alone."""
    priced_limit: int
    """Completion tokens per choice it is priced at: `limit`, or default_max_tokens."""
    prompt_tokens: int
    amounts: dict[str, int]
    """What the form costs at `priced_limit`."""
    timeouts: Timeouts
    """The upstream timeouts of the model's route."""
    caps: tuple[tuple[str, str], ...] = ()
    """What differs from the request as the client sent it, for X-Cycles-Caps."""
    wire_model: str = ""
    """The name the upstream knows `model` by (an alias's, an Azure deployment); "": `model`."""
    tool_calls: tuple[tuple[str, int], ...] = ()
    """The hosted tool calls reserved, by tool (metering/billable.py)."""
    writes: Mapping[str, Any] = field(default_factory=dict)
    """Body changes this form needs for its model with bound: hard (the service tier it was
    reserved at, billable.tier_limits)."""
    cache_writes: tuple[int, int] = (0, 0)
    """Prompt tokens reserved as 5-minute and one-hour cache writes (metering/caching.py)."""

    def usage(self, completion: int) -> Usage:
        """What this form reserves with `completion` tokens: its prompt (cache writes apart),
        the completion, and its hosted tool calls."""
        five, hour = self.cache_writes
        return Usage(
            self.prompt_tokens,
            completion,
            cache_write_tokens=five,
            cache_write_1h_tokens=hour,
            tool_calls=self.tool_calls,
        )


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
        scaled = math.ceil(counted * self.price.tokenizer_factor)
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
    price = _price(policy, model)
    upstream = policy.upstream_for(model)
    if upstream is None:
        raise BadRequest(
            f"No route in the policy serves model {model!r}.", code="no_route", param="model"
        )
    api_version = endpoint.api_version or upstream.api_version
    if upstream.kind == "azure":
        azure.upstream_path(model, endpoint.suffix, api_version, upstream.name)  # 400 if bad
    stream = stream_flag(body, endpoint.name)
    rules = endpoint.gateway_rules if policy.identity == "api_key" else None
    forced = rules(body) if rules is not None else {}
    check_fields(body, endpoint.name, policy.request_fields)
    check_entries(body, endpoint.name, policy.request_fields)
    billables = billable.read(endpoint.name, body, endpoint.betas, plan.default_max_tool_calls)
    refused = billable.refusal(model, price, billables)
    if refused is not None:
        raise refused
    bound = policy.bound == "hard" and not shadow
    if bound:
        forced = {**forced, **billables.limits}
    pricer = _Pricer(
        policy, plan, endpoint, body, choices(body, endpoint.name), billables, bound=bound
    )
    allowed = _allowed(policy, plan, model)
    asked = pricer.asked(model, price, bound=bound)
    degraded = [
        variant
        for rule in plan.degrade
        if (variant := pricer.degraded(rule, asked, upstream, asked_allowed=allowed)) is not None
    ]
    if not allowed and not degraded:
        raise Forbidden(
            f"Model {model!r} is not allowed on plan {plan.name!r}; allowed: "
            f"{', '.join(plan.quotas.models or ())}.",
            type="model_not_allowed",
        )
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
        variants=(asked, *degraded),
        forced=forced,
        api_version=api_version,
    )


class _Pricer:
    """Prices the forms of one request; prompt tokens are counted once per encoding."""

    def __init__(
        self,
        policy: Policy,
        plan: Plan,
        endpoint: Endpoint,
        body: dict[str, Any],
        n: int,
        billables: billable.Billables,
        *,
        bound: bool,
    ) -> None:
        self.policy, self.plan, self.endpoint, self.body, self.choices = (
            policy,
            plan,
            endpoint,
            body,
            n,
        )
        self.billables = billables
        self.bound = bound
        self._prompts: dict[str, Estimate] = {}

    def prompt_tokens(self, price: ModelPrice) -> int:
        """The encoding's count, its text scaled by the model's tokenizer_factor and its images
        by its image_token_factor (each rounded up)."""
        if price.encoding not in self._prompts:
            estimate = self.endpoint.estimator(
                self.body,
                encodings.get_encoding(price.encoding),
                default_max_tokens=self.plan.default_max_tokens,
                tokenize_max_bytes=self.policy.limits.tokenize_max_bytes,
                image_tokens_default=self.policy.limits.image_tokens_default,
            )
            self._prompts[price.encoding] = estimate
        counted = self._prompts[price.encoding]
        text = counted.prompt_tokens - counted.image_tokens
        # No factor: images are refused (billable.refusal), none are counted here.
        images = math.ceil(counted.image_tokens * (price.image_token_factor or 1))
        return math.ceil(text * price.tokenizer_factor) + images

    def variant(
        self,
        rule: DegradeRule | None,
        model: str,
        price: ModelPrice,
        limit: int | None,
        caps: tuple[tuple[str, str], ...],
    ) -> Variant:
        price, extra, calls = billable.reservation(price, self.billables)
        prompt = self.prompt_tokens(price) + extra
        priced = self.plan.default_max_tokens if limit is None else limit
        cached = caching.writes(self.billables.cache_ttl, prompt)
        usage = Usage(
            prompt,
            priced * self.choices,
            cache_write_tokens=cached[0],
            cache_write_1h_tokens=cached[1],
            tool_calls=calls,
        )
        cost = amounts(estimate_price(price, self.body, self.endpoint.name), usage)
        if max(cost.values()) >= MAX_AMOUNT:
            raise BadRequest(
                f"This call could cost more than any budget can hold ({cost['TOKENS']} tokens); "
                "lower max_tokens, n or the prompt.",
                code="call_too_large",
                param=self.endpoint.limit_field,
            )
        timeouts = self.policy.timeouts_for(model)
        alias = self.policy.aliases.get(model)
        # The tier goes up for the model sent: a degraded model may price other tiers.
        tier = billable.tier_limits(self.endpoint.name, price, self.billables)
        return Variant(
            rule,
            model,
            price,
            limit,
            priced,
            prompt,
            cost,
            timeouts,
            caps,
            wire_model="" if alias is None else alias.send,
            tool_calls=calls,
            writes=tier if self.bound else {},
            cache_writes=cached,
        )

    def asked(self, model: str, price: ModelPrice, *, bound: bool) -> Variant:
        if self.endpoint.limit_field is None:
            return self.variant(None, model, price, None, ())
        limit = completion_limit(self.body, self.endpoint.name)
        if limit is None and bound:
            limit = self.plan.default_max_tokens
        cap = self.plan.quotas.max_tokens_per_request
        effective = self.plan.default_max_tokens if limit is None else limit
        caps: tuple[tuple[str, str], ...] = ()
        if cap is not None and effective > cap:
            limit, caps = cap, (("max_tokens", str(cap)),)
        return self.variant(None, model, price, limit, caps)

    def degraded(
        self, rule: DegradeRule, asked: Variant, upstream: Upstream, *, asked_allowed: bool
    ) -> Variant | None:
        """The form `rule` rewrites the call into, or None when the rule cannot apply to it: the
        asked model is outside the rule's models, a model_not_allowed rule for an allowed
        model, or a model switch to another upstream, to a model the plan does not allow, or to
        one whose policy entry does not price what the call turns on (metering/billable.py)."""
        if not rule.applies_to(asked.model):
            return None
        if rule.kind == "model_not_allowed" and asked_allowed:
            return None
        model = rule.model or asked.model
        if rule.model is not None and upstream.kind == "azure":
            # A deployment of that model on the same Azure resource, or the rule cannot apply.
            found = self.policy.deployment_for(upstream, rule.model)
            if found is None:
                return None
            model = found
        price = _price(self.policy, model)
        if self.policy.upstream_for(model) != upstream or not _allowed(
            self.policy, self.plan, model
        ):
            return None
        if billable.refusal(model, price, self.billables) is not None:
            return None
        caps = [("model", model)] if model != asked.model else []
        limit = asked.limit
        if rule.max_tokens is not None and self.endpoint.limit_field is not None:
            current = self.plan.default_max_tokens if limit is None else limit
            if rule.max_tokens < current:
                limit = rule.max_tokens
                caps.append(("max_tokens", str(limit)))
        else:
            caps += [c for c in asked.caps if c[0] == "max_tokens"]
        return self.variant(rule, model, price, limit, tuple(caps))


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


def _allowed(policy: Policy, plan: Plan, model: str) -> bool:
    """The plan's `models` quota allows the name asked or the model it is priced as."""
    quotas = plan.quotas
    return quotas.model_allowed(model) or quotas.model_allowed(policy.priced_as(model))


def _price(policy: Policy, model: str) -> ModelPrice:
    price = policy.price_for(model)
    if price is None:
        raise BadRequest(
            f"Model {model!r} has no price in the policy, so its calls cannot be budgeted. "
            "Use a priced model or ask the operator to add it under `models:`.",
            code="model_not_priced",
            param="model",
        )
    return price
