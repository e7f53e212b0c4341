"""From a parsed request body to a priced, bounded call ready to reserve. No I/O.

The endpoint table is the one place that knows which OpenAI endpoints are budgeted, how each is
estimated, and which field bounds its completion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from proxy import encodings
from proxy.errors import BadRequest
from proxy.estimate import (
    Estimate,
    completion_limit,
    estimate_chat,
    estimate_completions,
    estimate_embeddings,
)
from proxy.policy.runtime import ModelPrice, Plan, Policy, Upstream
from proxy.pricing import Usage, amounts

EndpointName = Literal["chat", "completions", "embeddings"]
Estimator = Callable[..., Estimate]


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: EndpointName
    suffix: str
    """Path below the upstream's base URL."""
    estimator: Estimator
    limit_field: str | None
    """The field a hard bound writes when the client sent no completion limit."""


ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": Endpoint(
        "chat", "/chat/completions", estimate_chat, "max_completion_tokens"
    ),
    "/v1/completions": Endpoint("completions", "/completions", estimate_completions, "max_tokens"),
    "/v1/embeddings": Endpoint("embeddings", "/embeddings", estimate_embeddings, None),
}


@dataclass(frozen=True, slots=True)
class PreparedCall:
    endpoint: Endpoint
    model: str
    price: ModelPrice
    upstream: Upstream
    estimate: Estimate
    amounts: dict[str, int]
    body: bytes
    """What goes upstream: the client's bytes unless something had to be written."""
    stream: bool
    hide_usage_chunk: bool
    """We asked for include_usage on the client's behalf; its chunk is not relayed."""


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"The request body is not valid JSON ({exc.args[0]}). Send a JSON object.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest(
            "Missing or invalid 'model': send the model name as a non-empty string.",
            code="invalid_model",
            param="model",
        )
    return model


def prepare(
    policy: Policy, plan: Plan, endpoint: Endpoint, raw: bytes, *, shadow: bool
) -> PreparedCall:
    """Validate, estimate, bound and price one call."""
    body = parse_body(raw)
    model = require_model(body)
    price = policy.price_for(model)
    if price is None:
        raise BadRequest(
            f"Model {model!r} has no price in the policy, so its calls cannot be budgeted. "
            "Use a priced model or ask the operator to add it under `models:`.",
            code="model_not_priced",
            param="model",
        )
    upstream = policy.upstream_for(model)
    if upstream is None:
        raise BadRequest(
            f"No route in the policy serves model {model!r}.", code="no_route", param="model"
        )
    stream = _stream_flag(body, endpoint)
    changed = False
    if _needs_bound(policy, endpoint, body, shadow):
        assert endpoint.limit_field is not None
        body[endpoint.limit_field] = plan.default_max_tokens
        changed = True
    hide = stream and not _client_asked_usage(body)
    if hide:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        changed = True
    enc = encodings.get_encoding(price.encoding)
    est = endpoint.estimator(
        body,
        enc,
        default_max_tokens=plan.default_max_tokens,
        tokenize_max_bytes=policy.limits.tokenize_max_bytes,
    )
    return PreparedCall(
        endpoint=endpoint,
        model=model,
        price=price,
        upstream=upstream,
        estimate=est,
        amounts=amounts(price, Usage(est.prompt_tokens, est.completion_tokens)),
        body=orjson.dumps(body) if changed else raw,
        stream=stream,
        hide_usage_chunk=hide,
    )


def _stream_flag(body: dict[str, Any], endpoint: Endpoint) -> bool:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false.", code="invalid_type", param="stream")
    if stream and endpoint.name == "embeddings":
        raise BadRequest("Embeddings cannot be streamed.", code="invalid_type", param="stream")
    return stream


def _needs_bound(policy: Policy, endpoint: Endpoint, body: dict[str, Any], shadow: bool) -> bool:
    """bound: hard writes a completion limit when the client sent none, so the reservation is a
    true upper bound on what the provider can bill. Shadow mode rewrites nothing."""
    return (
        policy.bound == "hard"
        and not shadow
        and endpoint.limit_field is not None
        and completion_limit(body, endpoint.name) is None
    )


def _client_asked_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise BadRequest(
            "'stream_options' must be an object.", code="invalid_type", param="stream_options"
        )
    return options.get("include_usage") is True
