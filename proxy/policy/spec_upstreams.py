"""What the operator writes about where calls go: upstreams (base URL, key, kind, the model
names they serve, passthrough paths), routes by model glob, and their timeout overrides. Each
value is checked on its own here; schema.py checks what spans sections.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from proxy.policy.spec_types import (
    SPEC_CONFIG,
    Name,
    Seconds,
    check_env_name,
    check_service_url,
    problem,
)

BUDGETED_PATHS: tuple[str, ...] = (
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/responses",
    "/messages",
)
"""Endpoints the proxy budgets itself (relative to an upstream's base_url, which ends in /v1)."""

_SEGMENT = re.compile(r"[A-Za-z0-9_.~-]+")


class _Spec(BaseModel):
    model_config = SPEC_CONFIG


def _check_base_url(url: str) -> str:
    return check_service_url(
        url, what="base_url", example="https://api.openai.com/v1", key_field="api_key_env"
    )


def _check_passthrough(path: str) -> str:
    segments = path.split("/")
    if (
        segments[0] != ""
        or not all(_SEGMENT.fullmatch(s) for s in segments[1:])
        or any(s in (".", "..") for s in segments)
    ):
        raise problem(
            f"{path!r} is not a plain path like '/audio/speech': it must start with '/' and use "
            "only A-Z a-z 0-9 _ . ~ - in each segment, with no empty, '.' or '..' segments, "
            "percent-encoding, query or fragment"
        )
    if path == "/v1" or path.startswith("/v1/"):
        raise problem(
            f"passthrough paths are relative to the upstream's base_url (which ends in /v1): "
            f"write {path.removeprefix('/v1') or '/'!r}"
        )
    for budgeted in BUDGETED_PATHS:
        if budgeted == path or budgeted.startswith(path + "/"):
            raise problem(
                f"{path!r} would forward the budgeted endpoint {budgeted} without a budget; "
                "budgeted endpoints are always served by the proxy itself"
            )
    return path


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
    api_key_env: Annotated[str, AfterValidator(check_env_name)] | None = None
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
