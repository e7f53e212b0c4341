"""A tools/call through its budget: refused when the tool is hidden or unpriced (and the server
refuses unpriced tools), reserved with the same script as every call, answered as MCP clients
expect when denied (a result with `isError`, its text naming the budget and what remains, and
the X-Cycles-* headers of LLM calls), then relayed and settled by how it ended (outcome.py).

The relay and the settle run as one shielded task, named like the pipeline's calls (so a stop
lets them settle first): a client that leaves mid-answer does not stop the proxy reading the
server's answer, within the server's timeout, to settle by it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from aiohttp import web

from proxy.budget.decision import DECISION, REMAINING, SHADOW, quota_exceeded, remaining_header
from proxy.budget.directory import TenantConfig
from proxy.core import tasks
from proxy.core.errors import BudgetExceeded, ClientError, Forbidden
from proxy.gateway.admission import ACTION
from proxy.gateway.events import EVENTS, CallDecided, CallDenied, ToolAsked
from proxy.mcp import jsonrpc, listing, pricing, settling
from proxy.mcp.forward import Hop
from proxy.mcp.jsonrpc import Message, ToolCall
from proxy.metering.pricing import format_amount
from proxy.policy.tools import ToolPrice, tool_key
from proxy.store.ledger.base import ReserveRequest, ReserveResult

log = logging.getLogger(__name__)


async def call(hop: Hop, message: Message, raw: bytes) -> web.StreamResponse:
    """Check, reserve, relay, settle (module docstring)."""
    tool = jsonrpc.tool_call(message)
    price = hop.admission.policy.tool_price(hop.server.name, tool.name)
    tenant = await hop.admission.tenant(hop.scope.tenant, ACTION)
    asked = ToolAsked(hop.scope, hop.server.name, tool.name, price.key if price else None, {})
    refused = await _refused(hop, tenant, tool, price)
    if refused is not None:
        return _refuse(hop, tool, asked, refused)

    async def attempt(config: TenantConfig) -> tuple[ReserveRequest, ReserveResult]:
        """Refused as unbudgeted on the settings this attempt reserves with (a reload after a
        plan change included), so a reservation on no line never lets a priced tool run."""
        unbudgeted = _unbudgeted(hop, config, tool, price)
        if unbudgeted is not None:
            raise _Unbudgeted(unbudgeted)
        made = pricing.reserve_request(config, hop.scope, hop.server.name, tool.name, price)
        reserving = hop.admission.ledger.reserve(made)
        return made, await hop.admission.store_op("reserve", reserving, abandoned=made)

    try:
        made, result = await hop.admission.fresh(
            hop.scope.tenant,
            tenant,
            attempt,
            lambda m: m[1].stale,
            step=ACTION,
            what="this tool call was admitted",
        )
    except _Unbudgeted as exc:
        return _refuse(hop, tool, asked, ("unbudgeted", str(exc)))
    asked = dataclasses.replace(asked, amounts=made.candidates[0].amounts)
    return await _decided(hop, tool, raw, (price, asked), made, result)


class _Unbudgeted(Exception):
    """The tool's price is in a unit the settings reserved with budget on no level the call
    names: the text the model reads."""


def _refuse(
    hop: Hop, tool: ToolCall, asked: ToolAsked, refused: tuple[str, str]
) -> web.Response:
    """A refusal before the ledger (nothing reserved), told to the subscribers."""
    outcome, text = refused
    why = Forbidden(text, type=f"tool_{outcome}")
    denied = CallDenied(hop.request, hop.scope.tenant, why, None, tool=asked)
    hop.request.app[EVENTS].emit(denied)
    return refusal(tool, text)


async def _refused(
    hop: Hop, tenant: TenantConfig, tool: ToolCall, price: ToolPrice | None
) -> tuple[str, str] | None:
    """Why the call is refused before the ledger (the outcome counted, the text the model
    reads), or None: hidden from this caller, or unpriced on a server that refuses unpriced
    tools. (Unbudgeted is decided per attempt, on the settings it reserves with: call.)"""
    server, key = hop.server, tool_key(hop.server.name, tool.name)
    why = (await listing.hidden(hop, tenant, tool.name))(tool.name)
    if why is not None:
        return "hidden", why + " It was not called."
    if price is None:
        if server.unpriced_tools == "allow":
            return None
        return "unpriced", (
            f"Tool {key} has no price in the policy's actions, and MCP server {server.name!r} "
            "refuses unpriced tools (unpriced_tools: deny). It was not called."
        )
    return None


def _unbudgeted(
    hop: Hop, tenant: TenantConfig, tool: ToolCall, price: ToolPrice | None
) -> str | None:
    """Why a priced call is refused on `tenant`'s settings: its unit budgeted on no level the
    call names (or none at all); None when it reserves on some line, or is unpriced."""
    if price is None:
        return None
    lines = pricing.lines_of(tenant, hop.scope, price.unit)
    why = pricing.unbudgeted(tenant.plan, price.unit, lines)
    if why is None:
        return None
    key = tool_key(hop.server.name, tool.name)
    return f"Tool {key} is priced in {price.unit}. {why} It was not called."


async def _decided(
    hop: Hop,
    tool: ToolCall,
    raw: bytes,
    priced: tuple[ToolPrice | None, ToolAsked],
    made: ReserveRequest,
    result: ReserveResult,
) -> web.StreamResponse:
    """A denial answered (after CallDenied), or the call relayed and settled (after
    CallDecided)."""
    events, tenant = hop.request.app[EVENTS], hop.scope.tenant
    price, asked = priced
    denial = _denial(result, made, price)
    if denial is not None:
        events.emit(CallDenied(hop.request, tenant, denial, result, tool=asked))
        return refusal(tool, denial.message, denial.headers)
    held = result.reservation
    asked = dataclasses.replace(asked, would_be=_would_be(result) if made.shadow else "ALLOW")
    reserved = held.amounts if held else {}
    events.emit(CallDecided(hop.request, tenant, reserved, result=result, tool=asked))
    hop = dataclasses.replace(hop, extra=_headers(result, made))
    relaying = settling.relay(hop, tool, raw, held, (price, asked))
    task = tasks.spawn(relaying, name=f"call {made.reservation_id}")
    return await asyncio.shield(task)


def _denial(
    result: ReserveResult, made: ReserveRequest, price: ToolPrice | None
) -> ClientError | None:
    """What an enforced denial answers, or None when the call goes on (shadow never denies)."""
    if result.status != "active":
        inactive = Forbidden(
            f"Tenant is {result.status}: no new tool calls are admitted. Ask the operator to "
            "reactivate it.",
            type=f"tenant_{result.status}",
        )
        inactive.headers[DECISION] = "DENY"
        return inactive
    if result.allowed:
        return None
    if result.quota is not None:
        return quota_exceeded(result, made)
    state = pricing.denied_line(result)
    assert price is not None  # an unpriced call reserves on no line: only a quota denies it
    text = pricing.denial_text(state, made.action or "", price)
    remaining = format_amount(state.remaining, state.line.unit)
    return BudgetExceeded(text, headers={DECISION: "DENY", REMAINING: remaining})


def _headers(result: ReserveResult, made: ReserveRequest) -> dict[str, str]:
    """X-Cycles-Decision and -Remaining as LLM calls have them; in shadow mode what enforcement
    would have done."""
    headers = {DECISION: "ALLOW", **remaining_header(result.lines)}
    if made.shadow:
        headers[SHADOW] = _would_be(result)
    return headers


def _would_be(result: ReserveResult) -> str:
    if result.quota is not None:
        return f"DENY quota {result.quota.split()[0]}"
    if not result.would_allow:
        if result.denied_by is None:
            return "DENY budget"
        return f"DENY budget {result.lines[result.denied_by].line.level}"
    return "ALLOW"


def refusal(tool: ToolCall, text: str, headers: dict[str, str] | None = None) -> web.Response:
    """A tool result with isError: what the model reads, and can stop on."""
    return web.Response(
        body=jsonrpc.tool_error(tool.id, text),
        content_type="application/json",
        headers=headers,
    )
