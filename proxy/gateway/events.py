"""What happens to a call, as typed events, and the small in-process bus they go out on.

The pipeline (and the reservation API, for an action) emits three, as mitmproxy's addons see
hook events; the parts that report on calls subscribe at startup (app.py) instead of being
called by name:

An MCP tool call's events carry `tool` (ToolAsked: server, tool, price key); its refusals before
the ledger (a hidden or unpriced tool) are CallDenied without a reserve result.

    event         when                                               subscribers
    CallDecided   admitted: an LLM call goes upstream; an action's   observe (the call's log
                  reservation is made                                line), metrics
    CallDenied    refused by a budget, a quota or the tenant's       observe, metrics, alerts
                  status: nothing went upstream                      (a period's first deny)
    CallSettled   its charge is written (or spilled), or it is       observe, metrics, alerts
                  released                                           (thresholds crossed)

With OpenTelemetry on (telemetry.py), tracing subscribes to all three (a call's span and its
children, the GenAI metrics).

Subscribers run in the emitting task, in the order they subscribed, and must be quick (a counter,
a log line; an alert's webhook delivery is a task of its own). One that fails is logged and
never changes the call's answer or its charge.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from proxy.budget.call import PreparedCall, Sent
from proxy.budget.decision import Decision
from proxy.budget.scopes import Scope
from proxy.core.errors import ClientError
from proxy.metering.pricing import Usage
from proxy.store.ledger.base import ReserveResult, SettleResult

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Asked:
    """An LLM call as its caller asked for it (an action has none)."""

    scope: Scope
    call: PreparedCall


@dataclass(frozen=True, slots=True)
class ToolAsked:
    """An MCP tool call as its caller asked for it: the server and tool, the `actions:` key
    that prices it (None: unpriced) and what it reserves (nothing before the ledger)."""

    scope: Scope
    server: str
    name: str
    price: str | None
    amounts: Mapping[str, int]
    would_be: str | None = None
    """On CallDecided: what enforcement would have done (ALLOW, or the shadow's DENY …)."""

    @property
    def action(self) -> str:
        """`mcp:<server>/<tool>`, as the audit and the usage events name it."""
        return f"mcp:{self.server}/{self.name}"


@dataclass(frozen=True, slots=True)
class Routed:
    """An admitted LLM call: what it asked, what goes upstream, and the decision."""

    asked: Asked
    sent: Sent
    verdict: Decision


@dataclass(frozen=True, slots=True)
class Timings:
    """How long an LLM call's upstream took, in seconds."""

    endpoint: str
    first_byte: float | None
    """Until the response headers arrived (None: they never did)."""
    total: float
    """Until the call settled."""
    started: float = 0.0
    """When it went upstream (time.monotonic), which the durations above count from."""


@dataclass(frozen=True, slots=True)
class CallDecided:
    request: web.Request
    tenant: str
    reserved: Mapping[str, int]
    """What the call's reservation holds; nothing for a call forwarded unbudgeted."""
    routed: Routed | None = None
    """An LLM call's; None for an action."""
    result: ReserveResult | None = None
    """An LLM call's reserve (None: it went unbudgeted)."""
    reserving: tuple[float, float] | None = None
    """An LLM call's reserve round trip: its start and end (time.monotonic)."""
    tool: ToolAsked | None = None
    """An MCP tool call's."""


@dataclass(frozen=True, slots=True)
class CallDenied:
    request: web.Request
    tenant: str
    denial: ClientError
    result: ReserveResult | None
    """The reserve that was refused (None: refused without one)."""
    asked: Asked | None = None
    """An LLM call's; None for an action."""
    reserving: tuple[float, float] | None = None
    """An LLM call's reserve round trip: its start and end (time.monotonic)."""
    tool: ToolAsked | None = None
    """An MCP tool call's: refused by the ledger (`result`), or before it (hidden, unpriced,
    unbudgeted: `denial.type` is `tool_<why>`)."""


@dataclass(frozen=True, slots=True)
class CallSettled:
    request: web.Request
    tenant: str | None
    """Whose budget was charged; None when nothing was reserved (the call went unbudgeted)."""
    charge: Mapping[str, int] | None
    """What was charged, per unit; None: released, nothing charged."""
    result: SettleResult | None = None
    """The commit's, when one ran (thresholds it crossed)."""
    timings: Timings | None = None
    """An LLM call's upstream, once it was sent."""
    usage: Usage | None = None
    """The usage the provider reported, when it did."""
    tool: ToolAsked | None = None
    """An MCP tool call's."""
    ending: str | None = None
    """How an MCP tool call ended (mcp/outcome.py's Ending: result, error, timeout, …)."""


Event = CallDecided | CallDenied | CallSettled
E = TypeVar("E", CallDecided, CallDenied, CallSettled)


class Events:
    """The bus: `subscribe` at startup, `emit` from the pipeline."""

    def __init__(self) -> None:
        self._subscribers: defaultdict[type, list[Callable[[Any], None]]] = defaultdict(list)

    def subscribe(self, kind: type[E], subscriber: Callable[[E], None]) -> None:
        self._subscribers[kind].append(subscriber)

    def emit(self, event: Event) -> None:
        for subscriber in self._subscribers.get(type(event), ()):
            try:
                subscriber(event)
            except Exception:
                log.exception("a subscriber to %s failed", type(event).__name__)


EVENTS = web.AppKey("events", Events)
