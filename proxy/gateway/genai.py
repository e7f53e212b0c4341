"""The OpenTelemetry GenAI semantic conventions, as far as the proxy's calls need them: the
operation and provider names, the span name, and the two client metrics (token usage and
operation duration, with the bucket boundaries the conventions give).

Attribute values that come from clients (models) are bounded in the metrics as in Prometheus
(metrics.FirstSeen); spans carry them as sent.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.metrics import Meter

from proxy.gateway.metrics import MAX_MODELS, FirstSeen

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOKEN_TYPE = "gen_ai.token.type"
ERROR_TYPE = "error.type"

TOKEN_USAGE = "gen_ai.client.token.usage"
DURATION = "gen_ai.client.operation.duration"
TOKEN_BUCKETS = tuple(4**n for n in range(14))
"""1, 4, 16, … 67108864: the conventions' boundaries for token usage."""
DURATION_BUCKETS = tuple(0.01 * 2**n for n in range(14))
"""0.01, 0.02, 0.04, … 81.92 seconds: the conventions' boundaries for operation duration."""

_OPERATIONS: Mapping[str, str] = {
    "chat": "chat",
    "messages": "chat",
    "responses": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}


def operation(endpoint: str) -> str:
    """The operation name of an endpoint (budget/endpoints.py names them)."""
    return _OPERATIONS.get(endpoint, endpoint)


def provider(endpoint: str, upstream_kind: str | None = None) -> str:
    """The provider name: Anthropic's Messages API, Azure OpenAI, or OpenAI's API (which
    self-hosted servers speak too)."""
    if endpoint == "messages":
        return "anthropic"
    return "azure.ai.openai" if upstream_kind == "azure" else "openai"


def span_name(endpoint: str, model: str | None) -> str:
    """`{gen_ai.operation.name} {gen_ai.request.model}`, or the operation alone."""
    return f"{operation(endpoint)} {model}" if model else operation(endpoint)


class Instruments:
    """The GenAI client metrics, on `meter`."""

    def __init__(self, meter: Meter) -> None:
        self.tokens = meter.create_histogram(
            TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.model = FirstSeen(MAX_MODELS)

    def bounded(self, attributes: Mapping[str, str]) -> dict[str, str]:
        """`attributes` with the models past the first MAX_MODELS seen counted as `other`."""
        out = dict(attributes)
        for key in (REQUEST_MODEL, RESPONSE_MODEL):
            if key in out:
                out[key] = self.model(out[key])
        return out

    def record_usage(self, attributes: Mapping[str, str], input: int, output: int) -> None:
        bounded = self.bounded(attributes)
        self.tokens.record(input, {**bounded, TOKEN_TYPE: "input"})
        self.tokens.record(output, {**bounded, TOKEN_TYPE: "output"})

    def record_duration(self, attributes: Mapping[str, str], seconds: float) -> None:
        self.duration.record(seconds, self.bounded(attributes))
