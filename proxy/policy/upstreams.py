"""Where calls go, in runtime form: the upstreams, the model names they list (aliases, Azure
deployments), the routes that pick an upstream by model glob, and the timeouts of a route's
calls. Checked once, at load (schema.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from proxy.policy.prices import ModelPrice


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds."""

    read_request: float = 30.0
    connect: float = 10.0
    first_byte: float = 120.0
    """A stream's response headers, from sending."""
    chunk_idle: float = 60.0
    """Silence between two chunks of a stream, once its headers arrived."""
    stream_total: float = 900.0
    client_write: float = 30.0
    drain_after_disconnect: float = 60.0
    non_stream_answer: float = 600.0
    """A whole (non-stream) answer, headers and body, from sending: the provider sends nothing
    before the whole generation is done, reasoning included."""


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str
    """Without a trailing slash, e.g. https://api.openai.com/v1."""
    api_key_env: str | None = None
    auth: Literal["bearer", "x-api-key", "api-key"] = "bearer"
    """How the provider key goes up: `Authorization: Bearer`, `x-api-key` (Anthropic) or
    `api-key` (Azure OpenAI)."""
    passthrough: tuple[str, ...] = ()
    """Extra paths (under /v1) forwarded unbudgeted, e.g. "/audio/speech"."""
    timeouts: Timeouts | None = None
    """For its unbudgeted calls (model lists, passthrough): the policy's timeouts with the
    upstream's `timeouts:` applied; None when it overrides none."""
    include_usage: bool = True
    """Streams may ask for `stream_options.include_usage`; False: the upstream refuses any
    `stream_options`, so none is sent."""
    kind: Literal["openai", "azure"] = "openai"
    """azure: calls go to /deployments/{deployment}/… with an api-version
    (metering/shapes/azure.py)."""
    api_version: str | None = None
    """kind azure: the api-version of calls whose client named none."""


@dataclass(frozen=True, slots=True)
class Alias:
    """A model name clients use for a model an upstream serves under `send` (an Azure
    deployment, a self-hosted server's own name) and that is priced as `price`."""

    upstream: str
    send: str
    price: str
    served: ModelPrice | None = None
    """What its calls are priced at when that is not `price`'s entry as written: the entry with
    the image factor of the model served (aliases.py: the one published for `send`, else one
    written on the entry, else none and its images are refused). None: `price`'s entry."""


@dataclass(frozen=True, slots=True)
class Route:
    model: str
    """A glob on the requested model name."""
    upstream: str
    timeouts: Timeouts | None = None
    """The policy's timeouts with the route's `timeouts:` applied; None when the route
    overrides none, so the policy's own apply."""
