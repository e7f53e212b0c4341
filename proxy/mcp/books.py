"""What operators see of each tool call: one JSON log line on `cycles.calls` (as the
reservation API writes for actions) and `cycles_tool_calls_total{server, tool, outcome}`, the
tool label being the price's `actions:` key (bounded by the policy; `unpriced` otherwise)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson

from proxy.gateway.metrics import METRICS
from proxy.mcp.forward import Hop

log = logging.getLogger("cycles.calls")

UNPRICED = "unpriced"


def record(
    hop: Hop,
    tool: str,
    price_key: str | None,
    outcome: str,
    *,
    reservation: str | None = None,
    charge: Mapping[str, int] | None = None,
) -> None:
    """Count the call and write its line: `outcome` is why it was refused before the ledger
    (hidden, unpriced), `denied`, or how a relayed call ended (outcome.Ending)."""
    metrics = hop.request.app[METRICS]
    metrics.tool_calls.labels(hop.server.name, price_key or UNPRICED, outcome).inc()
    line = {
        "event": "mcp_tool_call",
        "request_id": hop.request.headers.get("X-Request-Id"),
        "tenant": hop.scope.tenant,
        "scope": hop.scope.path(),
        "server": hop.server.name,
        "tool": tool,
        "price": price_key,
        "outcome": outcome,
        "reservation": reservation,
        "charged": dict(charge) if charge is not None else None,
    }
    log.info("%s", orjson.dumps(line).decode())
