"""A request's billables (billable.py) on one model's price: refused with 400
`unpriced_feature` when the price lacks one of them (`refusal`), otherwise reserved (the tier
reserved, the prompt tokens they add, the hosted tool calls: `reservation`), and the tier a call
with `bound: hard` is sent at (`tier_limits`). No I/O. billable.py's docstring lists each
dimension.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from proxy.core.errors import BadRequest
from proxy.metering.billable import (
    AUTO,
    LISTED,
    PER_CONTAINER,
    Billables,
    ToolCalls,
    unpriced,
)
from proxy.metering.token_kinds import derived
from proxy.policy.prices import STANDARD_TIERS, ModelPrice

Check = Callable[[str, ModelPrice, Billables, str], BadRequest | None]
"""One dimension's check: (model, price, billables, where the price is in the policy)."""
PRICE_HINTS = {
    LISTED: "{per_call: 0, input_tokens: <the most tokens one call's output, or the server's "
    "tool list, adds to the prompt>}"
}
"""How to price a tool billed by what it adds to the prompt rather than by a fee."""


def refusal(model: str, price: ModelPrice, billables: Billables) -> BadRequest | None:
    """The 400 for the first thing `billables` turns on that `price` does not price, if any."""
    where = f"models.{price.name}"
    for check in _CHECKS:
        refused = check(model, price, billables, where)
        if refused is not None:
            return refused
    return None


def _unpriced_tier(
    model: str, price: ModelPrice, billables: Billables, where: str
) -> BadRequest | None:
    tier = billables.tier
    if tier != AUTO and tier not in STANDARD_TIERS and tier not in price.service_tiers:
        return unpriced(
            f"Model {model!r} has no price for service_tier {tier!r}. Leave service_tier out, "
            f"or ask the operator to add `service_tiers: {{{tier}: <factor>}}` to {where}.",
            "service_tier",
        )
    return None


def _unpriced_tool(
    model: str, price: ModelPrice, billables: Billables, where: str
) -> BadRequest | None:
    for tool in (*billables.pooled, *(name for name, _ in billables.own)):
        if tool not in price.tool_calls:
            kind = billables.tool_types.get(tool, tool)
            sent = "" if kind == tool else f" (type {kind!r})"
            return unpriced(
                f"Model {model!r} has no price for the hosted tool {tool!r}{sent}, whose calls are "
                f"billed apart. Remove it from 'tools', or ask the operator to add "
                f"`tool_calls: {{{tool}: {PRICE_HINTS.get(tool, '<USD per call>')}}}` to {where}.",
                "tools",
            )
    return None


def _unpriced_client_tool(
    model: str, price: ModelPrice, billables: Billables, where: str
) -> BadRequest | None:
    unknown = [kind for kind in billables.client_tools if kind not in price.client_tool_tokens]
    if unknown:
        return unpriced(
            f"Model {model!r} has no price for the client tool type {unknown[0]!r}, whose "
            "definition adds prompt tokens its JSON does not show. Use a tool version the "
            f"operator lists, or ask the operator to add `client_tool_tokens: {{{unknown[0]}: "
            f"<tokens>}}` to {where}.",
            "tools",
        )
    return None


def _unpriced_document(
    model: str, price: ModelPrice, billables: Billables, where: str
) -> BadRequest | None:
    if billables.documents and price.document_tokens is None:
        at = billables.documents[0]
        return unpriced(
            f"Model {model!r} has no price for document inputs ({at}): what a file, a URL or a "
            "stored prompt bills cannot be counted from the request. Send its text instead, or "
            f"ask the operator to add `documents: {{tokens_per_file: <tokens>}}` to {where}.",
            at,
        )
    return None


def _unpriced_image(
    model: str, price: ModelPrice, billables: Billables, where: str
) -> BadRequest | None:
    if billables.images and price.image_token_factor is None:
        at = billables.images[0]
        return unpriced(
            f"Model {model!r} has no image rule the proxy knows ({at}): what it bills for an "
            "image cannot be bounded. Leave the image out, or ask the operator to add "
            "`image_token_factor: <the most it bills for an image, over the proxy's rule: gpt-4o's "
            f"tile count, or 1,600 tokens on the Messages API>` to {where}.",
            at,
        )
    return None


def _unpriced_audio(
    model: str, price: ModelPrice, billables: Billables, where: str
) -> BadRequest | None:
    if billables.audio_output is not None and price.audio_output is None:
        return unpriced(
            f"Model {model!r} has no price for audio output, which is billed apart from text. "
            f"Leave out '{billables.audio_output}' (ask for text only), or ask the operator to "
            f"add `audio_output: <USD per 1M tokens>` to {where}.",
            billables.audio_output,
        )
    return None


def _unpriced_cache_write(
    model: str, price: ModelPrice, billables: Billables, where: str
) -> BadRequest | None:
    if billables.cache_ttl is not None and price.cache_write is None:
        return unpriced(
            f"Model {model!r} has no price for cache writes, which '{billables.cache_at}' asks "
            "for. Leave out cache_control, or ask the operator to add `cache_write: <USD per 1M "
            f"tokens>` (and, for one-hour caches, `cache_write_1h`) to {where}.",
            billables.cache_at,
        )
    return None


def _unpriced_long_context(
    model: str, price: ModelPrice, billables: Billables, where: str
) -> BadRequest | None:
    if billables.long_context is not None and price.long_context is None:
        return unpriced(
            f"The anthropic-beta {billables.long_context!r} lets model {model!r} bill long "
            "prompts at long-context prices, which the policy does not have. Leave the beta "
            f"out, or ask the operator to add `long_context: {{above: 200000, input: <USD>, "
            f"output: <USD>}}` to {where}.",
            None,
        )
    return None


_CHECKS: tuple[Check, ...] = (
    _unpriced_tier,
    _unpriced_tool,
    _unpriced_client_tool,
    _unpriced_document,
    _unpriced_image,
    _unpriced_audio,
    _unpriced_cache_write,
    _unpriced_long_context,
)
"""In the order a request is refused for the first of them."""


def tier_limits(endpoint: str, price: ModelPrice, billables: Billables) -> dict[str, str]:
    """With bound: hard, the tier to write into a call that leaves it to the account (none, or
    `auto`) on a model that prices no tier above the standard one: the standard tier, so the
    provider serves the call at what it was reserved at rather than at a dearer tier the account
    may be configured for."""
    if billables.tier != AUTO or _reserved_tier(price, AUTO) is not None:
        return {}
    return {"service_tier": "standard_only" if endpoint == "messages" else "default"}


def reservation(price: ModelPrice, billables: Billables) -> tuple[ModelPrice, int, ToolCalls]:
    """What the call is reserved at on `price` (refusal found nothing): the price with the tier
    reserved, the prompt tokens to add (documents, tool results, the tool prompt), and the
    hosted tool calls to reserve, as `Usage.tool_calls`."""
    fees = price.tool_calls
    pooled, own = billables.pooled, billables.own
    if billables.stored_prompt:
        pooled = tuple(dict.fromkeys((*pooled, *fees)))
        own = _with_stored_prompt(own, fees)
    calls = list(own)
    extra = sum(n * fees[tool].input_tokens for tool, n in own)
    if pooled and billables.pool:
        per_call = [tool for tool in pooled if tool != PER_CONTAINER]
        if per_call:
            dearest = max(per_call, key=lambda tool: fees[tool].per_call)
            calls.append((dearest, billables.pool))
        extra += billables.pool * max(fees[tool].input_tokens for tool in pooled)
    extra += len(billables.documents) * (price.document_tokens or 0)
    extra += price.tool_prompt_tokens if billables.tools else 0
    extra += sum(price.client_tool_tokens.get(kind, 0) for kind in billables.client_tools)
    tier = _reserved_tier(price, billables.tier)
    ttl = billables.cache_ttl
    tiered = derived(
        price, ("tier", tier, ttl), lambda: dataclasses.replace(price, tier=tier, cache_ttl=ttl)
    )
    return tiered, extra, tuple(calls)


def _with_stored_prompt(own: ToolCalls, fees: Mapping[str, object]) -> ToolCalls:
    """`own`, and what a stored prompt's tools may add if the model prices them: a
    code_interpreter container (one per call, unless the request enables one already) and an
    MCP server's tool list (one more, besides those of the request's `mcp` entries)."""
    counts = dict(own)
    if PER_CONTAINER in fees:
        counts[PER_CONTAINER] = 1
    if LISTED in fees:
        counts[LISTED] = counts.get(LISTED, 0) + 1
    return tuple(counts.items())


def _reserved_tier(price: ModelPrice, asked: str) -> str | None:
    if asked in STANDARD_TIERS:
        return None
    if asked != AUTO:
        return asked
    dearest = max(price.service_tiers.items(), key=lambda tier: tier[1], default=None)
    return dearest[0] if dearest is not None and dearest[1] > 1 else None
