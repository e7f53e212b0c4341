"""The forms of one call and their prices: `Variant` is the call as asked or as a degrade rule
rewrites it, and `Pricer` prices each form of one request (prompt tokens counted once per
encoding, completion capped by the plan, hosted tools and cache writes reserved). No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.budget.endpoints import Endpoint
from proxy.core import encodings
from proxy.core.errors import BadRequest
from proxy.core.types import MAX_AMOUNT
from proxy.metering import billable, billable_reserve, caching
from proxy.metering.estimate import Estimate, completion_limit
from proxy.metering.pricing import Usage, amounts, ceil_times
from proxy.metering.token_kinds import estimate_price
from proxy.policy.prices import ModelPrice
from proxy.policy.runtime import DegradeRule, Plan, Policy
from proxy.policy.upstreams import Timeouts, Upstream


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
    """The hosted tool calls reserved, by tool (metering/billable_reserve.py)."""
    writes: Mapping[str, Any] = field(default_factory=dict)
    """Body changes this form needs for its model with bound: hard (the service tier it was
    reserved at, billable_reserve.tier_limits)."""
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


class Pricer:
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
        images = ceil_times(counted.image_tokens, price.image_token_factor)
        return ceil_times(text, price.tokenizer_factor) + images

    def variant(
        self,
        rule: DegradeRule | None,
        model: str,
        price: ModelPrice,
        limit: int | None,
        caps: tuple[tuple[str, str], ...],
    ) -> Variant:
        price, extra, calls = billable_reserve.reservation(price, self.billables)
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
        tier = billable_reserve.tier_limits(self.endpoint.name, price, self.billables)
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
        one whose policy entry does not price what the call turns on
        (metering/billable_reserve.py)."""
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
        price = price_of(self.policy, model)
        if self.policy.upstream_for(model) != upstream or not plan_allows(
            self.policy, self.plan, model
        ):
            return None
        if billable_reserve.refusal(model, price, self.billables) is not None:
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


def plan_allows(policy: Policy, plan: Plan, model: str) -> bool:
    """The plan's `models` quota allows the name asked or the model it is priced as."""
    quotas = plan.quotas
    return quotas.model_allowed(model) or quotas.model_allowed(policy.priced_as(model))


def price_of(policy: Policy, model: str) -> ModelPrice:
    """The model's price in the policy; a 400 when it has none."""
    price = policy.price_for(model)
    if price is None:
        raise BadRequest(
            f"Model {model!r} has no price in the policy, so its calls cannot be budgeted. "
            "Use a priced model or ask the operator to add it under `models:`.",
            code="model_not_priced",
            param="model",
        )
    return price
