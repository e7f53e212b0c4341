"""The checked, runtime form of a policy: what the proxy consults on every request.

`schema.py` turns what the operator wrote (YAML, Decimal prices, optional fields) into these
frozen types once, at load. Everything here is already validated and already in integer units,
so the request path never parses, converts or second-guesses a policy value. A model's prices
are in prices.py, the upstreams, routes and their timeouts in upstreams.py.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from proxy.core.peers import ForwardedHeader, Network
from proxy.core.types import CALL_UNITS, Mode, Period, ReservationSettings, Unit
from proxy.policy.prices import ModelPrice, snapshot_of
from proxy.policy.tools import McpServer, ToolPrice, any_matches, price_lookup
from proxy.policy.upstreams import Alias, Route, Timeouts, Upstream

LEVELS: tuple[str, ...] = (
    "tenant",
    "workspace",
    "app",
    "workflow",
    "agent",
    "toolset",
    "run",
    "user",
)
"""Scope levels, outermost first. `run` is keyed by (tenant, run id) and has no period; `user`,
the tenant's end user, is keyed by (tenant, user id) and has any period."""


ENCODINGS: tuple[str, ...] = ("o200k_base", "cl100k_base")


@dataclass(frozen=True, slots=True)
class Budget:
    """A budget on one scope level of a plan. `limit` is in integer units of `unit`."""

    level: str
    limit: int
    unit: Unit = "USD"
    period: Period = "month"

    def limit_with(self, overrides: Mapping[str, int]) -> int:
        """The limit in force for a tenant: its override for the level replaces the limit of a
        call budget (overrides are written in the level's call unit); an action budget keeps the
        plan's. The ledger applies the same rule (store/ledger/common.py, lua/common.lua)."""
        if self.unit in CALL_UNITS:
            return overrides.get(self.level, self.limit)
        return self.limit


@dataclass(frozen=True, slots=True)
class PlanQuotas:
    """Counts, rates and access rules of a plan (None / empty: no such quota)."""

    runs_per_day: int | None = None
    steps_per_run: int | None = None
    requests_per_minute: int | None = None
    """The tenant's."""
    tokens_per_minute: int | None = None
    concurrent_requests: tuple[tuple[str, int], ...] = ()
    """(level, limit) pairs, in LEVELS order."""
    level_requests_per_minute: tuple[tuple[str, int], ...] = ()
    """(level, limit) pairs for levels below the tenant, in LEVELS order: each value of the
    level (each end user, say) gets its own rate."""
    max_tokens_per_request: int | None = None
    models: tuple[str, ...] | None = None
    """Globs of the models the plan may use; None allows every priced model."""
    tools: tuple[str, ...] | None = None
    """Globs over `mcp:<server>/<tool>` of the MCP tools the plan may call; None: every tool."""

    def model_allowed(self, model: str) -> bool:
        return self.models is None or any(fnmatch.fnmatchcase(model, m) for m in self.models)

    def tool_allowed(self, server: str, tool: str) -> bool:
        return self.tools is None or any_matches(self.tools, server, tool)


@dataclass(frozen=True, slots=True)
class DegradeRule:
    """`degrade[index]` of a plan: when `kind` holds, rewrite the call with `model`, `max_tokens`
    and/or `fit` (cap the completion to what still fits, not below `fit_floor` tokens); or, a
    hide rule (always remaining_below), hide the MCP tools `hide_tools` names. A hide rule sets
    nothing else and never rewrites an LLM call (Plan.call_rules)."""

    index: int
    kind: Literal["remaining_below", "not_fit", "model_not_allowed"]
    level: str | None = None
    """remaining_below: the scope level measured."""
    below_fraction: tuple[int, int] | None = None
    """remaining_below as a fraction of the limit: (numerator, denominator), e.g. (20, 100)."""
    below_amount: int | None = None
    """remaining_below as an amount in the level's budget unit."""
    only_models: tuple[str, ...] = ()
    """Globs of asked models the rule applies to; empty: any."""
    model: str | None = None
    max_tokens: int | None = None
    fit_floor: int | None = None
    hide_tools: tuple[str, ...] = ()
    """Globs over `mcp:<server>/<tool>` hidden (from tools/list, refused on tools/call) while
    the level is below the threshold: a fraction fires when any budget line of the level (call
    or action) is below that fraction of its limit; an amount is in the level's call unit."""

    @property
    def name(self) -> str:
        return f"degrade[{self.index}]"

    def applies_to(self, model: str) -> bool:
        return not self.only_models or any(fnmatch.fnmatchcase(model, m) for m in self.only_models)


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    budgets: tuple[Budget, ...]
    """What LLM calls reserve on (CALL_UNITS): at most one per level, in LEVELS order."""
    default_max_tokens: int = 4096
    quotas: PlanQuotas = field(default_factory=PlanQuotas)
    degrade: tuple[DegradeRule, ...] = ()
    """In policy order: the first whose condition holds and that fits wins."""
    alerts: tuple[int, ...] = ()
    """Alert thresholds in basis points of each budget line's limit, ascending (the plan's
    own `alerts.thresholds`, else the policy's)."""
    action_budgets: tuple[Budget, ...] = ()
    """What actions reserve on (action units: POST /v1/cycles/reservations, MCP tool calls):
    at most one per level and unit, in LEVELS order. A level may have a call budget and action
    budgets."""
    default_max_tool_calls: int = 10
    """Hosted tool calls reserved (and, with bound: hard, written as the limit) for a call that
    enables hosted tools and sets no `max_tool_calls` (Responses) or `max_uses` (Anthropic)."""

    @property
    def call_rules(self) -> tuple[DegradeRule, ...]:
        """The degrade rules that may rewrite an LLM call: all but the hide rules."""
        return tuple(rule for rule in self.degrade if not rule.hide_tools)

    def hiding(self, server: str, tool: str) -> tuple[DegradeRule, ...]:
        """The hide rules whose hide_tools name this tool (each hides it while it fires)."""
        return tuple(rule for rule in self.degrade if any_matches(rule.hide_tools, server, tool))

    def budget_for(self, level: str) -> Budget | None:
        """The level's call budget."""
        return next((b for b in self.budgets if b.level == level), None)

    def limits_level(self, level: str) -> bool:
        """Whether anything of the plan is kept per value of `level`: a budget (call or
        action), a concurrency quota or a request rate."""
        q = self.quotas
        per_level = (*q.concurrent_requests, *q.level_requests_per_minute)
        return any(b.level == level for b in (*self.budgets, *self.action_budgets)) or any(
            named == level for named, _ in per_level
        )

    def budget_of(self, level: str, unit: str) -> Budget | None:
        """The budget on `level` kept in `unit`, call or action."""
        every = (*self.budgets, *self.action_budgets)
        return next((b for b in every if b.level == level and b.unit == unit), None)


@dataclass(frozen=True, slots=True)
class ActionPrice:
    """What one named action reserves by default: `amount` units of `unit` (an action unit,
    or USD: then it reserves on the plan's USD call budgets)."""

    name: str
    unit: Unit
    amount: int


@dataclass(frozen=True, slots=True)
class TenantSeed:
    """A tenant declared in YAML: seeds a fresh store; the store's state wins later."""

    id: str
    plan: str
    mode: Mode | None = None
    alerts: tuple[int, ...] | None = None
    """Alert thresholds (basis points) replacing the plan's; None: the plan's."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 8 * 1024 * 1024
    route_body_bytes: Mapping[str, int] = field(default_factory=dict)
    """Per-path overrides, e.g. {"/v1/embeddings": 16 MiB}."""
    tokenize_max_bytes: int = 256 * 1024
    """Above this many bytes of text, the UTF-8 byte count bounds the token count instead."""
    image_tokens_default: int = 1445
    """Prompt tokens of an image whose size is unknown; the default is the tile rule's worst
    case (images.IMAGE_TOKENS), so the reservation stays an upper bound."""

    max_answer_bytes: int = 64 * 1024 * 1024
    """A whole answer from the provider (not a stream) is read into memory up to this many
    bytes; a larger one is 502 (and a budgeted call charged: it was delivered)."""

    def body_limit(self, path: str) -> int:
        return self.route_body_bytes.get(path, self.max_body_bytes)


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    secret_env: str | None = None
    """The environment variable holding the HMAC secret (read when an alert is sent)."""


@dataclass(frozen=True, slots=True)
class Alerts:
    thresholds: tuple[int, ...] = ()
    """Basis points, ascending: the default for plans without their own."""
    webhooks: tuple[Webhook, ...] = ()


@dataclass(frozen=True, slots=True)
class WebhookSink:
    url: str
    secret_env: str | None = None


@dataclass(frozen=True, slots=True)
class JsonlSink:
    path: str
    max_bytes: int = 100 * 1024 * 1024
    keep: int = 5


@dataclass(frozen=True, slots=True)
class OpenMeterSink:
    url: str
    token_env: str


Sink = WebhookSink | JsonlSink | OpenMeterSink


@dataclass(frozen=True, slots=True)
class UsageEvents:
    sinks: tuple[Sink, ...] = ()
    """None: events are off (nothing is built or written)."""
    max_pending: int = 1_000_000
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    mode: Mode = "enforce"
    fail_mode: Literal["closed", "open"] = "closed"
    on_store_lost: Literal["closed", "shadow"] = "closed"
    """After the ledger's epoch is lost (store/redis/safety.py): refuse every call (503), or forward
    unbudgeted as fail_mode open does (local rate limit; charges not written to that store)."""
    identity: Literal["header", "api_key"] = "header"
    trusted_proxies: tuple[Network, ...] = ()
    """Peers whose forwarded-for header names the client (proxy/core/peers.py); none by default."""
    forwarded_header: ForwardedHeader = "x-forwarded-for"
    """The header those proxies write: x-forwarded-for, or forwarded (RFC 7239)."""
    client_ipv6_prefix: int = 64
    """An IPv6 client's failed authentications are counted by its network of this many bits."""
    unknown_tenant: str | None = None
    """None: unknown tenants are denied (403). Otherwise the plan they are admitted on."""
    bound: Literal["hard", "soft"] = "hard"
    request_fields: Literal["strict", "forward"] = "strict"
    """strict: a request field the proxy cannot price is 400 unpriced_feature; forward: forward
    it, and the call may cost more than it reserved (metering/request_fields.py)."""
    user_ids: Literal["plain", "hash"] = "plain"
    """How an end user's id is kept in the ledger, the audit and the logs: as sent, or as a
    keyed hash (budget/end_users.py)."""
    user_id_secret_env: str = "CYCLES_USER_ID_SECRET"
    """The environment variable holding the key of that hash (read at load, never logged)."""
    upstreams: Mapping[str, Upstream] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    models: Mapping[str, ModelPrice] = field(default_factory=dict)
    plans: Mapping[str, Plan] = field(default_factory=dict)
    tenants: Mapping[str, TenantSeed] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    reservations: ReservationSettings = field(default_factory=ReservationSettings)
    alerts: Alerts = field(default_factory=Alerts)
    events: UsageEvents = field(default_factory=UsageEvents)
    actions: Mapping[str, ActionPrice] = field(default_factory=dict)
    """Named actions and their price, for POST /v1/cycles/reservations (`action: send_email`).
    The `mcp:` keys are not among them: they price tools (tool_prices)."""
    mcp_servers: Mapping[str, McpServer] = field(default_factory=dict)
    tool_prices: tuple[ToolPrice, ...] = ()
    """The `actions:` keys `mcp:<server>/<tool-or-glob>`, as written, in order."""
    source: str = "<memory>"
    aliases: Mapping[str, Alias] = field(default_factory=dict)
    """Model names upstreams list (`models:`, Azure `deployments:`), by the name clients use."""

    def priced_as(self, model: str) -> str:
        """The model `model` is priced as: an alias's, else itself."""
        alias = self.aliases.get(model)
        return model if alias is None else alias.price

    def deployment_for(self, upstream: Upstream, model: str) -> str | None:
        """The first name on `upstream` that runs `model` (an Azure deployment), if any."""
        for name, alias in self.aliases.items():
            if alias.upstream == upstream.name and model in (alias.price, name):
                return name
        return None

    def price_for(self, model: str) -> ModelPrice | None:
        """The price entry for `model` (an alias's model for an alias): its exact name, else the
        entry it is a dated snapshot of (gpt-4o-2024-08-06, gpt-4-0613, claude-sonnet-4-20250514).
        Nothing is matched by prefix: o1-pro is not o1, gpt-4o-audio-preview is not gpt-4o.
        An alias whose served model counts images by another factor has a price of its own."""
        alias = self.aliases.get(model)
        if alias is not None:
            if alias.served is not None:
                return alias.served
            model = alias.price
        exact = self.models.get(model)
        if exact is not None:
            return exact
        undated = snapshot_of(model)
        return None if undated is None else self.models.get(undated)

    def route_for(self, model: str) -> Route | None:
        """First route whose glob matches the model wins."""
        for route in self.routes:
            if fnmatch.fnmatchcase(model, route.model):
                return route
        return None

    def upstream_for(self, model: str) -> Upstream | None:
        """The upstream that lists `model` among its names, else its route's."""
        alias = self.aliases.get(model)
        if alias is not None:
            return self.upstreams[alias.upstream]
        route = self.route_for(model)
        return None if route is None else self.upstreams[route.upstream]

    def timeouts_for(self, model: str) -> Timeouts:
        """The timeouts of calls for `model`: its route's, else the policy's."""
        route = self.route_for(model)
        return self.timeouts if route is None or route.timeouts is None else route.timeouts

    def plan_for(self, tenant: str) -> Plan | None:
        """The tenant's plan from the YAML seeds, or the `unknown_tenant` plan, or None."""
        seed = self.tenants.get(tenant)
        if seed is not None:
            return self.plans[seed.plan]
        if self.unknown_tenant is not None:
            return self.plans[self.unknown_tenant]
        return None

    def alerts_for(self, tenant: str, plan: Plan) -> tuple[int, ...]:
        """Alert thresholds for `tenant` on `plan`: its YAML entry's, else the plan's."""
        seed = self.tenants.get(tenant)
        if seed is not None and seed.alerts is not None:
            return seed.alerts
        return plan.alerts

    def mode_for(self, tenant: str) -> Mode:
        seed = self.tenants.get(tenant)
        if seed is not None and seed.mode is not None:
            return seed.mode
        return self.mode

    def tool_price(self, server: str, tool: str) -> ToolPrice | None:
        """What a call to `tool` of `server` reserves: the exact key's price, else the matching
        glob's with the most literal characters (ties: the first written); None: unpriced."""
        return price_lookup(self.tool_prices, server, tool)

    @property
    def units(self) -> frozenset[str]:
        """Every unit a budget of some plan is kept in, or some action or tool is priced in."""
        budgets = (b for plan in self.plans.values() for b in (*plan.budgets, *plan.action_budgets))
        priced = [p.unit for p in self.actions.values()] + [p.unit for p in self.tool_prices]
        return frozenset({b.unit for b in budgets} | set(priced))

    @property
    def used_encodings(self) -> frozenset[str]:
        return frozenset(price.encoding for price in self.models.values())
