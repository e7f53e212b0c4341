"""The endpoints the proxy budgets: each one's upstream path, estimator, completion-limit field
and usage readers, and how a request path (an OpenAI path or an Azure deployment path) and its
`anthropic-beta` headers pick one. No I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.metering.estimate import (
    EndpointName,
    Estimate,
    estimate_chat,
    estimate_completions,
    estimate_embeddings,
)
from proxy.metering.pricing import Usage
from proxy.metering.shapes import azure, messages, responses
from proxy.metering.usage import StreamUsage, usage_from_body

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
