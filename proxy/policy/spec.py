"""What the operator writes: pydantic models that mirror the policy YAML one to one.

These check shape and the rules that need only one value (a URL's form, a path's form, a number's
sign); unknown fields are errors everywhere. `schema.compile_policy` then checks what spans
sections and turns a `PolicySpec` into the frozen `runtime.Policy`. Amounts stay `Decimal` here,
exactly as written; they become integer units only in `schema.py`. Nothing here reads files.
Upstreams and routes are spec_upstreams.py's, models spec_models.py's, and the pieces they share
spec_types.py's.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from proxy.core.peers import parse_networks
from proxy.policy.spec_mcp import ActionSpec, McpServerSpec
from proxy.policy.spec_models import ModelSpec
from proxy.policy.spec_types import (
    SPEC_CONFIG,
    Bytes,
    Mode,
    Money,
    Name,
    Seconds,
    WholeSeconds,
    check_env_name,
    problem,
)
from proxy.policy.spec_upstreams import RouteSpec, UpstreamSpec
from proxy.policy.units import THRESHOLD_HINT, basis_points


class _Spec(BaseModel):
    model_config = SPEC_CONFIG


def _check_network(text: str) -> str:
    try:
        parse_networks([text])
    except ValueError as exc:
        raise problem(str(exc)) from None
    return text


def _check_route_path(path: str) -> str:
    if not path.startswith("/v1/"):
        raise problem(f"{path!r} is not a request path; write the full path, e.g. /v1/embeddings")
    return path


def _check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise problem(f"{url!r} is not an http(s) URL; write e.g. https://hooks.example.com/x")
    if parts.username is not None or parts.password is not None:
        raise problem("a webhook url must not carry credentials; sign with secret_env instead")
    return url


def _threshold(value: object) -> int:
    """A threshold as written, "80%", in basis points of a budget's limit (8000)."""
    bp = basis_points(value)
    if bp is None:
        raise problem(f"{value!r} is not an alert threshold; {THRESHOLD_HINT}")
    return bp


class BudgetSpec(_Spec):
    limit: Money
    period: Literal["day", "month", "none"] | None = None
    unit: Name = "USD"
    """USD or TOKENS; an action unit is accepted here only to say where it belongs
    (action_budgets)."""


class ActionBudgetSpec(_Spec):
    """A budget of actions (POST /v1/cycles/reservations, MCP tool calls), in an action unit:
    RISK_POINTS or one of the operator's (`EMAILS`), a count."""

    limit: Money
    period: Literal["day", "month", "none"] | None = None
    unit: Name = "RISK_POINTS"


Count = Annotated[int, Field(gt=0)]


class QuotasSpec(_Spec):
    """A number applies to the tenant; `concurrent_requests` and `requests_per_minute` may name
    levels instead."""

    runs_per_day: Count | None = None
    steps_per_run: Count | None = None
    requests_per_minute: Count | dict[str, Count] | None = None
    tokens_per_minute: Count | None = None
    concurrent_requests: Count | dict[str, Count] | None = None
    max_tokens_per_request: Count | None = None
    models: list[Name] | None = None
    tools: list[Name] | None = None
    """Globs over `mcp:<server>/<tool>` of the MCP tools the plan may call; unset: every tool."""


class WhenSpec(_Spec):
    """Exactly one condition: remaining_below (with scope), does_not_fit or model_not_allowed."""

    scope: Name | None = None
    remaining_below: str | Money | None = None
    """"20%" of the scope's limit, or an amount in the scope's budget unit."""
    does_not_fit: Literal[True] | None = None
    model_not_allowed: Literal[True] | None = None
    model: Name | list[Name] | None = None
    """Only when the asked model matches (globs)."""


class FitSpec(_Spec):
    min_tokens: Count = 1


class SetSpec(_Spec):
    model: Name | None = None
    max_tokens: Count | None = None
    fit: FitSpec | None = None
    hide_tools: list[Name] | None = None
    """Globs over `mcp:<server>/<tool>` hidden while the rule fires; sets nothing else."""


class DegradeSpec(_Spec):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    when: WhenSpec
    set_: SetSpec = Field(alias="set")


Threshold = Annotated[int, BeforeValidator(_threshold)]
"""Written "80%"; held in basis points of a budget line's limit (8000)."""


class WebhookSpec(_Spec):
    url: Annotated[str, AfterValidator(_check_webhook_url)]
    secret_env: Annotated[str, AfterValidator(check_env_name)] | None = None
    """The environment variable holding the HMAC secret; without it events go unsigned."""


class PlanAlertsSpec(_Spec):
    thresholds: list[Threshold]
    """Replace the policy's `alerts.thresholds` for this plan (`[]`: no alerts)."""


class AlertsSpec(_Spec):
    thresholds: list[Threshold] = []
    webhooks: list[WebhookSpec] = []


class WebhookSinkSpec(_Spec):
    type: Literal["webhook"]
    url: Annotated[str, AfterValidator(_check_webhook_url)]
    secret_env: Annotated[str, AfterValidator(check_env_name)] | None = None
    """Signs each batch as alerts are signed; without it batches go unsigned."""


class JsonlSinkSpec(_Spec):
    type: Literal["jsonl"]
    path: Annotated[str, Field(min_length=1)]
    max_bytes: Bytes = 100 * 1024 * 1024
    """The file is rotated (to `<path>.1`, …) before it would grow past this."""
    keep: Annotated[int, Field(ge=1, le=1000)] = 5
    """Rotated files kept."""


class OpenMeterSinkSpec(_Spec):
    type: Literal["openmeter"]
    url: Annotated[str, AfterValidator(_check_webhook_url)]
    """OpenMeter's base URL, e.g. https://openmeter.cloud (events go to /api/v1/events)."""
    token_env: Annotated[str, AfterValidator(check_env_name)]
    """The environment variable holding the API token (sent as a Bearer token)."""


SinkSpec = Annotated[
    WebhookSinkSpec | JsonlSinkSpec | OpenMeterSinkSpec, Field(discriminator="type")
]


class EventsSpec(_Spec):
    sinks: list[SinkSpec] = []
    max_pending: Annotated[int, Field(gt=0)] = 1_000_000
    """Undelivered events past which the outbox counts as backed up (an alert, and memory://
    drops its oldest)."""
    source: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    """The CloudEvents `source` (default `cycles-proxy`): one per deployment, the same in its
    every process, as consumers deduplicate by (source, id)."""


class PlanSpec(_Spec):
    default_max_tokens: Annotated[int, Field(gt=0)] | None = None
    default_max_tool_calls: Annotated[int, Field(gt=0, le=10_000)] | None = None
    """Hosted tool calls reserved when a call sets no max_tool_calls / max_uses (default 10)."""
    budgets: dict[str, BudgetSpec] = {}
    """What LLM calls reserve on (USD or TOKENS), by level."""
    action_budgets: dict[str, ActionBudgetSpec | list[ActionBudgetSpec]] = {}
    """What actions reserve on (RISK_POINTS, or units of the operator's), by level: one budget,
    or a list of them in distinct units; a level may have call and action budgets."""
    quotas: QuotasSpec = QuotasSpec()
    degrade: list[DegradeSpec] = []
    alerts: PlanAlertsSpec | None = None


class TenantSpec(_Spec):
    plan: Name
    mode: Mode | None = None
    alerts: PlanAlertsSpec | None = None
    """Replace the plan's alert thresholds for this tenant (the store's record, set through
    the admin API, wins over this)."""


class TimeoutsSpec(_Spec):
    """Seconds. Fields left out take the defaults of `upstreams.Timeouts`."""

    read_request: Seconds | None = None
    connect: Seconds | None = None
    first_byte: Seconds | None = None
    chunk_idle: Seconds | None = None
    stream_total: Seconds | None = None
    client_write: Seconds | None = None
    drain_after_disconnect: Seconds | None = None
    non_stream_answer: Seconds | None = None
    """A whole (non-stream) answer, from sending to its last byte."""


class LimitsSpec(_Spec):
    max_body_bytes: Bytes | None = None
    route_body_bytes: dict[Annotated[str, AfterValidator(_check_route_path)], Bytes] | None = None
    tokenize_max_bytes: Bytes | None = None
    max_answer_bytes: Bytes | None = None
    image_tokens_default: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    """Prompt tokens of an image whose size cannot be read (a URL, an unknown format)."""


class ReservationsSpec(_Spec):
    """Seconds here; milliseconds in `core.types.ReservationSettings`."""

    cap_seconds: WholeSeconds | None = None
    tombstone_seconds: WholeSeconds | None = None
    run_idle_seconds: WholeSeconds | None = None
    user_idle_seconds: WholeSeconds | None = None
    period_grace_seconds: WholeSeconds | None = None
    on_expiry: Literal["charge", "release"] | None = None
    audit_retention_seconds: WholeSeconds | None = None


class HistorySpec(_Spec):
    """The ledger's daily rollups (store/ledger/rollups.py)."""

    retention_days: Annotated[int, Field(ge=1, le=3660)] = 400
    """How long a day's rollups are kept after the day ends."""
    values_per_level: Annotated[int, Field(ge=1, le=10000)] = 100
    """How many values of a structural level keep their own row in a tenant's day."""


class PolicySpec(_Spec):
    """A whole policy as written. Collections left out are empty; settings left out take the
    defaults of `runtime.Policy`."""

    mode: Mode | None = None
    fail_mode: Literal["closed", "open"] | None = None
    on_store_lost: Literal["closed", "shadow"] | None = None
    identity: Literal["header", "api_key"] | None = None
    trusted_proxies: list[Annotated[str, AfterValidator(_check_network)]] = []
    forwarded_header: Literal["x-forwarded-for", "forwarded"] | None = None
    client_ipv6_prefix: Annotated[int, Field(ge=16, le=128)] | None = None
    unknown_tenant: Name = "deny"
    bound: Literal["hard", "soft"] | None = None
    request_fields: Literal["strict", "forward"] | None = None
    user_ids: Literal["plain", "hash"] | None = None
    user_id_secret_env: Annotated[str, AfterValidator(check_env_name)] | None = None
    upstreams: dict[str, UpstreamSpec] = {}
    routes: list[RouteSpec] = []
    models: dict[str, ModelSpec] = {}
    plans: dict[str, PlanSpec] = {}
    tenants: dict[str, TenantSpec] = {}
    timeouts: TimeoutsSpec = TimeoutsSpec()
    limits: LimitsSpec = LimitsSpec()
    reservations: ReservationsSpec = ReservationsSpec()
    history: HistorySpec = HistorySpec()
    alerts: AlertsSpec = AlertsSpec()
    events: EventsSpec = EventsSpec()
    """Usage events (gateway/usage_events.py): one per settled call, to these sinks."""
    mcp_servers: dict[str, McpServerSpec] = {}
    actions: dict[str, ActionSpec] = {}
    """Named actions and what each reserves: `send_email: {RISK_POINTS: 50}`; keys
    `mcp:<server>/<tool-or-glob>` price MCP tool calls."""
