"""What the operator writes: pydantic models that mirror the policy YAML one to one.

These check shape and the rules that need only one value (a URL's form, a path's form, a number's
sign); unknown fields are errors everywhere. `schema.compile_policy` then checks what spans
sections and turns a `PolicySpec` into the frozen `runtime.Policy`. Amounts stay `Decimal` here,
exactly as written; they become integer units only in `schema.py`. Nothing here reads files.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from proxy.core.peers import parse_networks
from proxy.policy.units import THRESHOLD_HINT, basis_points

BUDGETED_PATHS: tuple[str, ...] = (
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/responses",
    "/messages",
)
"""Endpoints the proxy budgets itself (relative to an upstream's base_url, which ends in /v1)."""

_SEGMENT = re.compile(r"[A-Za-z0-9_.~-]+")


def _problem(message: str) -> PydanticCustomError:
    return PydanticCustomError("policy", message)


def _not_float(value: object) -> object:
    # The YAML loader never produces floats; this keeps programmatic callers honest too.
    if isinstance(value, float):
        raise _problem("amounts must not be floats (floats are inexact): pass text or a Decimal")
    return value


def _check_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _problem(f"{url!r} is not an http(s) URL; write e.g. https://api.openai.com/v1")
    if "?" in url or "#" in url:
        raise _problem("base_url must not have a query or a fragment")
    if parts.username is not None or parts.password is not None:
        raise _problem(
            "base_url must not carry credentials; name an environment variable in api_key_env"
        )
    return url.rstrip("/")


def _check_network(text: str) -> str:
    try:
        parse_networks([text])
    except ValueError as exc:
        raise _problem(str(exc)) from None
    return text


def _check_passthrough(path: str) -> str:
    segments = path.split("/")
    if (
        segments[0] != ""
        or not all(_SEGMENT.fullmatch(s) for s in segments[1:])
        or any(s in (".", "..") for s in segments)
    ):
        raise _problem(
            f"{path!r} is not a plain path like '/audio/speech': it must start with '/' and use "
            "only A-Z a-z 0-9 _ . ~ - in each segment, with no empty, '.' or '..' segments, "
            "percent-encoding, query or fragment"
        )
    if path == "/v1" or path.startswith("/v1/"):
        raise _problem(
            f"passthrough paths are relative to the upstream's base_url (which ends in /v1): "
            f"write {path.removeprefix('/v1') or '/'!r}"
        )
    for budgeted in BUDGETED_PATHS:
        if budgeted == path or budgeted.startswith(path + "/"):
            raise _problem(
                f"{path!r} would forward the budgeted endpoint {budgeted} without a budget; "
                "budgeted endpoints are always served by the proxy itself"
            )
    return path


def _check_route_path(path: str) -> str:
    if not path.startswith("/v1/"):
        raise _problem(f"{path!r} is not a request path; write the full path, e.g. /v1/embeddings")
    return path


def _check_env_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise _problem(f"{name!r} is not an environment variable name; write e.g. OPENAI_API_KEY")
    return name


def _check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _problem(f"{url!r} is not an http(s) URL; write e.g. https://hooks.example.com/x")
    if parts.username is not None or parts.password is not None:
        raise _problem("a webhook url must not carry credentials; sign with secret_env instead")
    return url


def _threshold(value: object) -> int:
    """A threshold as written, "80%", in basis points of a budget's limit (8000)."""
    bp = basis_points(value)
    if bp is None:
        raise _problem(f"{value!r} is not an alert threshold; {THRESHOLD_HINT}")
    return bp


Money = Annotated[Decimal, BeforeValidator(_not_float), Field(ge=0)]
"""A price or limit exactly as written (never through float)."""
Seconds = Annotated[float, Field(gt=0)]
Bytes = Annotated[int, Field(gt=0)]
WholeSeconds = Annotated[int, Field(gt=0)]
Name = Annotated[str, Field(min_length=1)]
Mode = Literal["enforce", "shadow"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RouteTimeoutsSpec(_Spec):
    """Seconds. Override the policy's `timeouts:` for the calls this route (or, on an upstream,
    its unbudgeted calls: model lists and `passthrough:` paths) sends upstream."""

    connect: Seconds | None = None
    first_byte: Seconds | None = None
    chunk_idle: Seconds | None = None
    stream_total: Seconds | None = None
    non_stream_answer: Seconds | None = None


class AliasSpec(_Spec):
    """A model name clients use: what the upstream calls it, and what it is priced as."""

    send: Name | None = None
    """The upstream's own name for it; default: the name the client used."""
    price: Name | None = None
    """The `models:` entry it is priced as; default: the name the client used."""


DeploymentName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]


class UpstreamSpec(_Spec):
    base_url: Annotated[str, AfterValidator(_check_base_url)]
    api_key_env: Annotated[str, AfterValidator(_check_env_name)] | None = None
    kind: Literal["openai", "azure"] = "openai"
    """openai: OpenAI's paths (and OpenAI-compatible servers: vLLM, Ollama, ...); azure: Azure
    OpenAI's deployment paths, base_url ending in /openai."""
    auth: Literal["bearer", "x-api-key", "api-key"] | None = None
    """Default: api-key on kind azure, bearer otherwise."""
    models: dict[Name, Name | AliasSpec] = {}
    """Names clients use for models this upstream serves: the upstream's own name (a string),
    or {send, price}. Each name is routed here, before `routes:`."""
    deployments: dict[DeploymentName, Name] = {}
    """kind azure: deployment → the model it runs (priced by `models:`)."""
    api_version: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")] | None = None
    """kind azure: the api-version for calls that name none (OpenAI-path calls)."""
    passthrough: list[Annotated[str, AfterValidator(_check_passthrough)]] = []
    timeouts: RouteTimeoutsSpec | None = None
    include_usage: bool = True
    """false: the upstream refuses `stream_options` (older vLLM, some Azure API versions), so
    none is sent; streams settle on usage it reports by itself, else on the counted text."""


class RouteSpec(_Spec):
    model: Name
    upstream: Name
    timeouts: RouteTimeoutsSpec | None = None


Multiplier = Annotated[Decimal, BeforeValidator(_not_float), Field(gt=0, le=100)]
FeatureName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
"""A service tier or hosted tool as the provider names it: `priority`, `web_search`."""
Tokens = Annotated[int, Field(ge=0, le=10_000_000)]


class ToolFeeSpec(_Spec):
    """A hosted tool's price: USD per call, and the input tokens one call may add."""

    per_call: Money
    input_tokens: Tokens = 0
    """Input tokens one call may add to the prompt (search results, a fetched page): reserved
    per call; the provider's usage report counts them."""


def _fee_shorthand(value: object) -> object:
    """`web_search: 0.01` is `web_search: {per_call: 0.01}`."""
    return value if isinstance(value, dict | ToolFeeSpec) else {"per_call": value}


ToolFee = Annotated[ToolFeeSpec, BeforeValidator(_fee_shorthand)]


class LongContextSpec(_Spec):
    """USD per 1M tokens of every token of a call whose prompt is above `above` tokens."""

    above: Annotated[int, Field(gt=0)]
    input: Money
    cached_input: Money | None = None
    """Default: the long-context input price."""
    cache_write: Money | None = None
    """Default: 1.25 times the long-context input price."""
    cache_write_1h: Money | None = None
    """Default: twice the long-context input price."""
    output: Money


class DocumentsSpec(_Spec):
    """Prompt tokens reserved per document input: `tokens_per_file`, or `tokens_per_page` times
    `pages` (the most pages a document may have)."""

    tokens_per_file: Annotated[int, Field(gt=0, le=10_000_000)] | None = None
    tokens_per_page: Annotated[int, Field(gt=0, le=1_000_000)] | None = None
    pages: Annotated[int, Field(gt=0, le=100_000)] | None = None


class ModelSpec(_Spec):
    """USD per 1M tokens."""

    input: Money
    cached_input: Money | None = None
    cache_write: Money | None = None
    """Cache writes: Anthropic's 5-minute ones, OpenAI's `cache_write_tokens`; without it,
    requests with `cache_control` are refused, and writes reported anyway are charged (and an
    OpenAI chat or Responses prompt reserved) at 1.25 times the input price."""
    cache_write_1h: Money | None = None
    """One-hour cache writes (`ttl: "1h"`); default: twice the input price."""
    output: Money
    encoding: str | None = None
    tokenizer_factor: Annotated[Decimal, BeforeValidator(_not_float), Field(gt=0, le=10)] | None = (
        None
    )
    """Prompt tokens are the encoding's count times this (rounded up): for models whose own
    tokenizer is not available offline (Claude), so estimates stay above what is billed."""
    audio_input: Money | None = None
    """Prompt audio tokens (`prompt_tokens_details.audio_tokens`); default: input."""
    audio_output: Money | None = None
    """Completion audio tokens (`completion_tokens_details.audio_tokens`); default: output."""
    image_input: Money | None = None
    """Prompt image tokens, where the provider reports them apart; default: input."""
    image_output: Money | None = None
    """Generated image tokens, where the provider reports them apart; default: output."""
    image_token_factor: (
        Annotated[Decimal, BeforeValidator(_not_float), Field(gt=0, le=100)] | None
    ) = None
    """Image inputs count the 512-px tile rule's tokens (gpt-4o's: 85 + 170 a tile) times this,
    rounded up: e.g. 33.34 for gpt-4o-mini, which bills 2833 + 5667 a tile."""
    limit_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    """The completion limit its chat API takes; default: max_completion_tokens for the o-series
    and gpt-5, either for the rest (model_rules.py)."""
    reasoning: bool | None = None
    """It may bill reasoning tokens it does not stream: a stream without a usage report is
    charged its reservation. Default: true for the o-series and gpt-5; otherwise only calls
    that enable thinking in the request (Claude's `thinking`)."""
    service_tiers: dict[FeatureName, Multiplier] = {}
    """Service tiers besides the standard one, each a factor on every token price
    (`priority: 2`, `flex: 0.5`); a call asking for another tier is refused."""
    tool_calls: dict[FeatureName, ToolFee] = {}
    """Hosted tools, USD per call (or {per_call, input_tokens}); a call enabling another hosted
    tool is refused."""
    long_context: LongContextSpec | None = None
    documents: DocumentsSpec | None = None
    """What a document input reserves; without it, documents are refused."""
    tool_prompt_tokens: Tokens | None = None
    """Prompt tokens the provider adds to a call that sends tools; default 346 for `claude*`
    models (Anthropic's tool-use system prompt), 0 otherwise."""
    client_tool_tokens: dict[FeatureName, Tokens] = {}
    """Anthropic's client tools by type (`bash_20250124: 245`): the prompt tokens each adds;
    added to (or overriding) the published ones for `claude*` models. A call sending another
    client tool type (bash, text_editor, computer, memory) is refused."""


class BudgetSpec(_Spec):
    limit: Money
    period: Literal["day", "month", "none"] | None = None
    unit: Literal["USD", "TOKENS", "RISK_POINTS"] = "USD"
    """RISK_POINTS is accepted here only to say where it belongs (action_budgets)."""


class ActionBudgetSpec(_Spec):
    """A budget of actions (POST /v1/cycles/reservations), in a count unit."""

    limit: Money
    period: Literal["day", "month", "none"] | None = None
    unit: Literal["RISK_POINTS"] = "RISK_POINTS"


Count = Annotated[int, Field(gt=0)]


class QuotasSpec(_Spec):
    """A number applies to the tenant; `concurrent_requests` may name levels instead."""

    runs_per_day: Count | None = None
    steps_per_run: Count | None = None
    requests_per_minute: Count | None = None
    tokens_per_minute: Count | None = None
    concurrent_requests: Count | dict[str, Count] | None = None
    max_tokens_per_request: Count | None = None
    models: list[Name] | None = None


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


class DegradeSpec(_Spec):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    when: WhenSpec
    set_: SetSpec = Field(alias="set")


Threshold = Annotated[int, BeforeValidator(_threshold)]
"""Written "80%"; held in basis points of a budget line's limit (8000)."""


class WebhookSpec(_Spec):
    url: Annotated[str, AfterValidator(_check_webhook_url)]
    secret_env: Annotated[str, AfterValidator(_check_env_name)] | None = None
    """The environment variable holding the HMAC secret; without it events go unsigned."""


class PlanAlertsSpec(_Spec):
    thresholds: list[Threshold]
    """Replace the policy's `alerts.thresholds` for this plan (`[]`: no alerts)."""


class AlertsSpec(_Spec):
    thresholds: list[Threshold] = []
    webhooks: list[WebhookSpec] = []


class PlanSpec(_Spec):
    default_max_tokens: Annotated[int, Field(gt=0)] | None = None
    default_max_tool_calls: Annotated[int, Field(gt=0, le=10_000)] | None = None
    """Hosted tool calls reserved when a call sets no max_tool_calls / max_uses (default 10)."""
    budgets: dict[str, BudgetSpec] = {}
    """What LLM calls reserve on (USD or TOKENS), by level."""
    action_budgets: dict[str, ActionBudgetSpec] = {}
    """What actions reserve on (RISK_POINTS), by level; a level may have both."""
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
    period_grace_seconds: WholeSeconds | None = None
    on_expiry: Literal["charge", "release"] | None = None
    audit_retention_seconds: WholeSeconds | None = None


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
    upstreams: dict[str, UpstreamSpec] = {}
    routes: list[RouteSpec] = []
    models: dict[str, ModelSpec] = {}
    plans: dict[str, PlanSpec] = {}
    tenants: dict[str, TenantSpec] = {}
    timeouts: TimeoutsSpec = TimeoutsSpec()
    limits: LimitsSpec = LimitsSpec()
    reservations: ReservationsSpec = ReservationsSpec()
    alerts: AlertsSpec = AlertsSpec()
    actions: dict[str, dict[str, Money]] = {}
    """Named actions and what each reserves: `send_email: {RISK_POINTS: 50}`."""
