"""OpenTelemetry, off unless the environment asks for it.

The standard variables turn it on: an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, or the
traces' or metrics' own, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `_METRICS_ENDPOINT`), unless
`OTEL_SDK_DISABLED=true`. Only then is tracing.py (and with it the OpenTelemetry SDK) imported,
its middleware added and its providers started: with none of them set, the proxy runs no
OpenTelemetry code at all, and loads none.

This module holds what the pipeline needs to know of it without importing it:
UPSTREAM_TRACEPARENT, the `traceparent` a traced call sends upstream instead of its client's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from aiohttp import web

from proxy.core.errors import SettingsError

ENDPOINTS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)
DISABLED = "OTEL_SDK_DISABLED"

UPSTREAM_TRACEPARENT = web.RequestKey("upstream_traceparent", str)
"""The W3C `traceparent` naming the call's upstream span (set only while tracing is on): a
proxy that traces passes on its own span's context, so the provider's spans hang under it."""


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """An OTLP endpoint is set, and the SDK is not disabled."""
    if environ.get(DISABLED, "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINTS)


def add_to(app: web.Application, environ: Mapping[str, str] = os.environ) -> None:
    """When `enabled`, trace and measure `app`'s budgeted calls (tracing.py); else nothing.
    SettingsError when it is asked for and the OpenTelemetry packages are not installed.
    Call it before the app's other cleanup contexts are added: its providers then stop (and
    flush) after every call has settled."""
    if not enabled(environ):
        return
    try:
        from proxy.gateway import tracing  # only now: off, none of OpenTelemetry is loaded
    except ImportError as exc:
        raise SettingsError(
            f"An OTLP endpoint is set (OTEL_EXPORTER_OTLP_*), but OpenTelemetry cannot be loaded "
            f"({exc}); install the proxy with its `otel` extra (pip install 'cycles-proxy[otel]'),"
            f" or unset the endpoint (or set {DISABLED}=true)."
        ) from None
    tracing.add_to(app)
