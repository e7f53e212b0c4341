"""An OTLP/HTTP receiver for the OpenTelemetry tests: what the proxy exports, decoded from its
protobuf payloads (opentelemetry-proto)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from proxy.testing.local import serving


@dataclass
class Receiver:
    """An OTLP/HTTP collector: what it was sent, decoded."""

    spans: list[Span] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)

    async def traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in export.resource_spans:
            self.resources.append(attributes(resource_spans.resource.attributes))
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return web.Response(content_type="application/x-protobuf")

    async def metrics_(self, request: web.Request) -> web.Response:
        export = ExportMetricsServiceRequest.FromString(await request.read())
        for resource_metrics in export.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                self.metrics.extend(scope_metrics.metrics)
        return web.Response(content_type="application/x-protobuf")

    def named(self, name: str) -> Span:
        found = [span for span in self.spans if span.name == name]
        assert len(found) == 1, f"{name}: {[s.name for s in self.spans]}"
        return found[0]


def value(any_value: AnyValue) -> Any:
    return getattr(any_value, any_value.WhichOneof("value") or "string_value")


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: value(pair.value) for pair in pairs}


@asynccontextmanager
async def receiving(
    monkeypatch: pytest.MonkeyPatch, batch_delay_ms: int = 50
) -> AsyncIterator[Receiver]:
    """A receiver, and the OTEL_* environment that points the proxy at it (spans exported
    every `batch_delay_ms`)."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.traces)
    app.router.add_post("/v1/metrics", receiver.metrics_)
    async with serving(app) as url:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", str(batch_delay_ms))
        monkeypatch.setenv("OTEL_SERVICE_NAME", "budgets")
        yield receiver
