"""The proxy's Prometheus metrics, in a registry of its own per application.

Each application gets its own `CollectorRegistry` (never the process-global one), so several
applications in one process (tests, the demo) do not collide and `/metrics` shows only its own.

Label values that come from clients are bounded: a tenant gets its own series only if it is on
the allow-list (CYCLES_METRICS_TENANTS) or among the first `max_tenants` other tenants this process
has seen; every later tenant is counted under `tenant="other"`. Models are bounded the same way
(the policy names them, but a client may ask for anything).

The metrics of calls are counted from the pipeline's events (`subscribe`, at startup; events.py),
those of ledger round trips by `timed`, around each. What a call updates is kept as plain numbers
(tallies.py) and turned into samples when scraped.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Iterable, Mapping
from functools import partial
from typing import TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from proxy.core.errors import LedgerError, QuotaExceeded, SettingsError
from proxy.gateway import tallies
from proxy.gateway.events import CallDecided, CallDenied, CallSettled, Events
from proxy.gateway.tallies import CounterChild, Family, HistogramChild, Level

T = TypeVar("T")

OTHER = "other"
UNPRICED = "unpriced"
"""The `tool` label of a tool call no `actions:` key prices."""
DEFAULT_MAX_TENANTS = 100
MAX_MODELS = 64
MAX_TENANTS_ENV = "CYCLES_METRICS_MAX_TENANTS"
TENANTS_ENV = "CYCLES_METRICS_TENANTS"
_TENANT_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_LEDGER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class FirstSeen:
    """Maps a label value to itself if it is in `always`, or among the first `limit` distinct
    other values; every other value to `other`."""

    def __init__(self, limit: int, always: Iterable[str] = ()) -> None:
        self.limit = limit
        self.always = frozenset(always)
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen or value in self.always:
            return value
        if len(self._seen) < self.limit:
            self._seen.add(value)
            return value
        return OTHER


def max_tenants_from_env(environ: Mapping[str, str] = os.environ) -> int:
    """N, the number of tenants with series of their own: CYCLES_METRICS_MAX_TENANTS or 100."""
    raw = environ.get(MAX_TENANTS_ENV)
    if raw is None or raw == "":
        return DEFAULT_MAX_TENANTS
    if not raw.isdigit():
        raise SettingsError(
            f"{MAX_TENANTS_ENV}={raw!r}: use a whole number of tenants (0 aggregates them all "
            f'under tenant="{OTHER}").'
        )
    return int(raw)


def tenants_from_env(environ: Mapping[str, str] = os.environ) -> frozenset[str]:
    """The tenants that always get series of their own: CYCLES_METRICS_TENANTS, comma-separated
    ids (lowercased, as tenant ids are case-insensitive)."""
    ids = [t.strip() for t in environ.get(TENANTS_ENV, "").split(",") if t.strip()]
    bad = [t for t in ids if not _TENANT_ID.fullmatch(t)]
    if bad:
        raise SettingsError(
            f"{TENANTS_ENV}: {', '.join(map(repr, bad))} is not a tenant id; list tenant ids "
            "separated by commas, e.g. acme,initech"
        )
    return frozenset(t.lower() for t in ids)


HELP: Mapping[str, str] = {
    "cycles_requests": "Budgeted calls by decision, endpoint, asked model and HTTP status "
    "returned.",
    "cycles_tenant_requests": "Budgeted calls per tenant (allow-listed and first N tenants seen; "
    "the rest under tenant=other).",
    "cycles_committed_units": "Units committed (spent) by settled calls, by unit (USD in 10**-8 "
    "dollars, TOKENS).",
    "cycles_tenant_committed_units": "Units committed per tenant (allow-listed and first N tenants "
    "seen; the rest under tenant=other).",
    "cycles_reserved_units": "Units reserved at admission, by unit.",
    "cycles_degradations": "Calls served by a degrade rule, by rule.",
    "cycles_quota_denials": "Calls denied by a quota, by quota.",
    "cycles_tool_calls": "MCP tool calls by server, price key (the policy's actions key, or "
    "unpriced) and outcome: refused before the ledger, denied, or how a relayed call ended.",
    "cycles_ledger_seconds": "Ledger round trips by operation.",
    "cycles_ledger_errors": "Ledger operations that failed, by operation.",
    "cycles_upstream_seconds": "From sending a budgeted call upstream to its answer fully read "
    "(streams: last event).",
    "cycles_upstream_first_byte_seconds": "From sending a budgeted call upstream to the upstream's "
    "response headers.",
    "cycles_in_flight": "Budgeted calls admitted and not yet settled.",
    "cycles_sweeper_reclaims": "Overdue reservations the sweeper resolved (expired: charged or "
    "released).",
    "cycles_sweeper_tenant_errors": "Tenants a sweeper pass skipped because their sweep failed "
    "(each one logged).",
    "cycles_alerts": "Alerts fired by this process, by type: budget.threshold, "
    "budget.first_deny, ledger.epoch_lost, events.backlog.",
    "cycles_events_pending": "Usage events in the outbox not yet delivered to every sink (as "
    "this process's sender last read it; alert events.backlog above events.max_pending).",
    "cycles_events_sent": "Usage events delivered, by sink type.",
    "cycles_events_dropped": "Usage events not written because their outbox was at "
    "events.max_pending (their sinks were not taking them); the settles went on.",
    "cycles_events_failures": "Failed deliveries of a batch of usage events, by sink type "
    "(each is retried).",
}
"""Each metric's help text, by its name."""


class Metrics:
    """Every metric the proxy exports, registered in `self.registry` (in this order, which is
    the order `/metrics` shows them in)."""

    def __init__(
        self, max_tenants: int | None = None, tenants: Iterable[str] | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tenant = FirstSeen(
            max_tenants_from_env() if max_tenants is None else max_tenants,
            tenants_from_env() if tenants is None else tenants,
        )
        self.model = FirstSeen(MAX_MODELS)
        self.requests = self._counter("cycles_requests", "decision", "endpoint", "model", "status")
        self.tenant_requests = self._counter("cycles_tenant_requests", "tenant", "decision")
        self.committed = self._counter("cycles_committed_units", "unit")
        self.tenant_committed = self._counter("cycles_tenant_committed_units", "tenant", "unit")
        self.reserved = self._counter("cycles_reserved_units", "unit")
        self.degradations = self._counter("cycles_degradations", "rule")
        self.quota_denials = self._counter("cycles_quota_denials", "quota")
        self.tool_calls = self._counter("cycles_tool_calls", "server", "tool", "outcome")
        self.ledger_latency = self._histogram("cycles_ledger_seconds", _LEDGER_BUCKETS, "op")
        self.ledger_errors = self._counter("cycles_ledger_errors", "op")
        self.upstream_latency = self._histogram(
            "cycles_upstream_seconds", _LATENCY_BUCKETS, "endpoint"
        )
        self.upstream_ttfb = self._histogram(
            "cycles_upstream_first_byte_seconds", _LATENCY_BUCKETS, "endpoint"
        )
        self.in_flight = Level("cycles_in_flight", HELP["cycles_in_flight"])
        self.registry.register(self.in_flight)
        self.sweeper_reclaims = self._plain_counter("cycles_sweeper_reclaims")
        self.sweeper_tenant_errors = self._plain_counter("cycles_sweeper_tenant_errors")
        self.alerts = self._counter("cycles_alerts", "type")
        self.events_pending = Gauge(
            "cycles_events_pending", HELP["cycles_events_pending"], registry=self.registry
        )
        self.events_sent = self._counter("cycles_events_sent", "sink")
        self.events_failures = self._counter("cycles_events_failures", "sink")
        self.events_dropped = self._plain_counter("cycles_events_dropped")

    def _counter(self, name: str, *labels: str) -> Family[CounterChild]:
        family = tallies.counter(name, HELP[name], labels)
        self.registry.register(family)
        return family

    def _plain_counter(self, name: str) -> Counter:
        """A counter without labels."""
        return Counter(name, HELP[name], registry=self.registry)

    def _histogram(
        self, name: str, buckets: tuple[float, ...], *labels: str
    ) -> Family[HistogramChild]:
        family = tallies.histogram(name, HELP[name], labels, buckets)
        self.registry.register(family)
        return family

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)


def subscribe(metrics: Metrics, events: Events) -> None:
    """Count calls from the pipeline's events."""
    events.subscribe(CallDecided, partial(_decided, metrics))
    events.subscribe(CallDenied, partial(_denied, metrics))
    events.subscribe(CallSettled, partial(_settled, metrics))


def _decided(m: Metrics, event: CallDecided) -> None:
    verdict = event.routed.verdict if event.routed is not None else None
    if verdict is not None and verdict.rule is not None and verdict.rewrite:
        m.degradations.labels(verdict.rule).inc()
    for unit, amount in event.reserved.items():
        m.reserved.labels(unit).inc(amount)


def _denied(m: Metrics, event: CallDenied) -> None:
    if isinstance(event.denial, QuotaExceeded) and event.denial.code is not None:
        m.quota_denials.labels(event.denial.code).inc()
    tool = event.tool
    if tool is not None:
        why = "denied" if event.result is not None else event.denial.type.removeprefix("tool_")
        m.tool_calls.labels(tool.server, tool.price or UNPRICED, why).inc()


def _settled(m: Metrics, event: CallSettled) -> None:
    # No tenant: the call went unbudgeted (fail_mode: open), nothing recorded; no charge: released.
    if event.tenant is not None and event.charge:
        tenant = m.tenant(event.tenant)
        for unit, amount in event.charge.items():
            m.committed.labels(unit).inc(max(amount, 0))
            m.tenant_committed.labels(tenant, unit).inc(max(amount, 0))
    if event.tool is not None and event.ending is not None:
        m.tool_calls.labels(event.tool.server, event.tool.price or UNPRICED, event.ending).inc()
    timings = event.timings
    if timings is not None:
        m.upstream_latency.labels(timings.endpoint).observe(timings.total)
        if timings.first_byte is not None:
            m.upstream_ttfb.labels(timings.endpoint).observe(timings.first_byte)


async def timed(metrics: Metrics | None, op: str, call: Awaitable[T]) -> T:
    """Await a ledger operation, timing it into `metrics` and counting a LedgerError."""
    if metrics is None:
        return await call
    started = time.monotonic()
    try:
        return await call
    except LedgerError:
        metrics.ledger_errors.labels(op).inc()
        raise
    finally:
        metrics.ledger_latency.labels(op).observe(time.monotonic() - started)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format, of the application's METRICS."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
