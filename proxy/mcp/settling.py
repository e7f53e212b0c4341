"""A tool call relayed and settled by how it ended (outcome.py's table): the reservation is
committed or released through admission's settle writer (the spill keeps it when the ledger is
down), then CallSettled goes out for the log line, the metrics and the alerts."""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web

from proxy.gateway.events import EVENTS, CallSettled, ToolAsked
from proxy.gateway.usage_events import action_json
from proxy.mcp import forward, upstream
from proxy.mcp.forward import Hop
from proxy.mcp.jsonrpc import RpcRefusal, ToolCall
from proxy.mcp.outcome import Ending, charges, ending_of
from proxy.policy.tools import ToolPrice
from proxy.store.ledger.base import Reservation

ChargeOnError = Literal["reserved", "released"]


async def relay(
    hop: Hop,
    tool: ToolCall,
    raw: bytes,
    held: Reservation | None,
    priced: tuple[ToolPrice | None, ToolAsked],
) -> web.StreamResponse:
    """Relay the call within the server's timeout, then settle it whatever happened (even
    cancelled: a stop gives up on it, and it is settled as a failure)."""
    pending, (price, asked) = forward.Pending(), priced
    ending, answered = Ending.FAILED, None
    try:
        async with asyncio.timeout(hop.seconds):
            async with await hop.send(raw) as answer:
                answered, found = await forward.relay_answer(hop, answer, tool.id, pending)
                ending = _ending(answer.status, found)
                forward.note_unanswered(hop, answer.status, found)
    except TimeoutError:
        ending, hop.unanswered.server_may_run = Ending.TIMEOUT, True
    except upstream.Unreachable:
        ending = Ending.NOT_SENT
    except upstream.TooLarge:
        ending = Ending.FAILED
    except upstream.Broken:
        ending, hop.unanswered.server_may_run = Ending.FAILED, True
    finally:
        rule = price.charge_on_error if price is not None else "reserved"
        await settle(hop, held, ending, rule, asked)
    if answered is not None:
        return answered
    return await forward.ended(hop, pending, _failure(hop, tool, ending))


def _ending(status: int, found: dict[str, object] | None) -> Ending:
    if status >= 500:
        return Ending.FAILED
    if status >= 400:
        return Ending.REFUSED
    return ending_of(found) if found is not None else Ending.FAILED


def _failure(hop: Hop, tool: ToolCall, ending: Ending) -> RpcRefusal:
    reason = {
        Ending.TIMEOUT: f"no answer within {hop.seconds:g} s (timeout_seconds)",
        Ending.NOT_SENT: "it could not be reached; the tool was not called",
    }.get(ending, "the connection failed before the answer came")
    status = 504 if ending is Ending.TIMEOUT else 502
    refusal = forward.failed(reason, tool.id, status=status)
    refusal.headers = dict(hop.extra)
    return refusal


async def settle(
    hop: Hop, held: Reservation | None, ending: Ending, rule: ChargeOnError, tool: ToolAsked
) -> dict[str, int] | None:
    """Commit the reservation or release it (outcome.charges), with its usage event naming
    the tool, then tell the subscribers; the charge (None: released)."""
    charge = dict(held.amounts) if held is not None and charges(ending, rule) else None
    event = None
    if held is not None and hop.admission.policy.events.sinks:
        rid = hop.request.headers.get("X-Request-Id")
        named = (tool.server, tool.name)
        event = action_json(rid, held.fields, endpoint="mcp", model=tool.action, tool=named)
    result = await hop.admission.settle(held, charge, event=event)
    tenant = held.tenant if held is not None else None
    settled = CallSettled(hop.request, tenant, charge, result, tool=tool, ending=ending.value)
    hop.request.app[EVENTS].emit(settled)
    return charge
