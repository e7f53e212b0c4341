"""A policy with a model for every budgeted endpoint (on an OpenAI and an Anthropic upstream),
bodies that each endpoint accepts, and the books of a call: what the fake provider billed
(priced by DESIGN.md's formula, written here), what the ledger reserved and what it charged
(from the tenant's audit trail)."""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from support import eventually

from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.testing.fake_upstream import Billed
from proxy.testing.local import Stack

UNITS = 10**8
HEADERS = {"X-Cycles-Tenant": "alpha"}

# USD per 1M tokens, as the policy below says: input, cache read, cache write, output.
PRICES: dict[str, tuple[Decimal, Decimal, Decimal, Decimal]] = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), Decimal("0.15"), Decimal("0.60")),
    "gpt-3.5-turbo-instruct": (Decimal("1.50"), Decimal("1.50"), Decimal("1.50"), Decimal(2)),
    "text-embedding-3-small": (Decimal("0.02"), Decimal("0.02"), Decimal("0.02"), Decimal(0)),
    "o3-mini": (Decimal("1.10"), Decimal("0.55"), Decimal("1.10"), Decimal("4.40")),
    "old-server-model": (Decimal(1), Decimal(1), Decimal(1), Decimal(2)),
    "claude-sonnet-4": (Decimal(3), Decimal("0.30"), Decimal("3.75"), Decimal(15)),
}
AUDIO_OUTPUT = {"gpt-4o-mini": Decimal(20)}
"""USD per 1M completion tokens of audio (the fake voices half of an answer asked in audio);
a model not listed bills them at its output price."""

POLICY = """
identity: header
{top}
upstreams:
  openai: {{base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}}
  anthropic:
    base_url: "https://api.anthropic.com/v1"
    api_key_env: ANTHROPIC_API_KEY
    auth: x-api-key
routes:
  - {{model: "claude-*", upstream: anthropic}}
  - {{model: "*", upstream: openai}}
models:
  gpt-4o-mini: {{input: 0.15, cached_input: 0.075, output: 0.60, audio_output: 20.00}}
  gpt-3.5-turbo-instruct: {{input: 1.50, output: 2.00}}
  text-embedding-3-small: {{input: 0.02, output: 0}}
  o3-mini: {{input: 1.10, cached_input: 0.55, output: 4.40}}
  old-server-model: {{input: 1, output: 2, limit_field: max_tokens}}
  claude-sonnet-4:
    input: 3
    cached_input: 0.30
    cache_write: 3.75
    output: 15
    tokenizer_factor: 1.2
plans:
  test:
    default_max_tokens: 100
    budgets:
      {budgets}
{plan}
tenants:
  alpha: {{plan: test}}
  gamma: {{plan: test, mode: shadow}}
"""


def fields_policy(
    tmp_path: Path,
    *,
    limit: str = "50",
    top: str = "",
    plan: str = "",
    budgets: str = "",
    writes_at_input: bool = False,
) -> Policy:
    """The policy above: a tenant budget of `limit` USD, or the plan's `budgets` as written
    (more lines at their indentation); `top` adds top-level settings (`request_fields:
    forward`), `plan` more of the plan (quotas, degrade) at its indentation. `writes_at_input`
    prices gpt-4o-mini's cache writes at its input price (as PRICES does), so its chat and
    Responses prompts are reserved at input, not at the default write price (1.25 × input)."""
    extra = textwrap.indent(textwrap.dedent(plan).strip(), "    ")
    budgets = budgets or f"tenant: {{limit: {limit}, period: month}}"
    text = POLICY.format(top=top, budgets=budgets, plan=extra)
    if writes_at_input:
        mini = "gpt-4o-mini: {input: 0.15, cached_input: 0.075, output: 0.60"
        assert text.count(mini) == 1
        text = text.replace(mini, f"{mini}, cache_write: 0.15")
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


def shapes_policy(
    tmp_path: Path,
    budgets: str = "tenant: {limit: 50, period: month}",
    gateway: bool = False,
    writes_at_input: bool = False,
) -> Policy:
    """The policy above with these `budgets`, in gateway mode (identity: api_key) if asked."""
    loaded = fields_policy(tmp_path, budgets=budgets, writes_at_input=writes_at_input)
    return dataclasses.replace(loaded, identity="api_key") if gateway else loaded


PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "responses": "/v1/responses",
    "messages": "/v1/messages",
}
BODIES: dict[str, dict[str, Any]] = {
    "chat": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_completion_tokens": 5,
    },
    "completions": {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 5},
    "embeddings": {"model": "text-embedding-3-small", "input": "Say hi"},
    "responses": {"model": "gpt-4o-mini", "input": "Say hi", "max_output_tokens": 5},
    "messages": {
        "model": "claude-sonnet-4",
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 5,
    },
}
"""A small valid request for each endpoint."""


def billed_cost(billed: Billed) -> int:
    """DESIGN.md's formula, apart from proxy.metering.pricing: ceil(Σ tokens × price per 1M /
    10**6)."""
    fresh, cached, written, output = PRICES[billed.model]
    voiced = AUDIO_OUTPUT.get(billed.model, output)
    hour = billed.cache_write_1h_tokens
    uncached = billed.prompt_tokens - billed.cached_tokens - billed.cache_write_tokens - hour
    text_out = billed.completion_tokens - billed.audio_completion_tokens
    numerator = (
        uncached * int(fresh * UNITS)
        + billed.cached_tokens * int(cached * UNITS)
        + billed.cache_write_tokens * int(written * UNITS)
        + hour * 2 * int(fresh * UNITS)  # Anthropic: a one-hour cache write is 2× input
        + text_out * int(output * UNITS)
        + billed.audio_completion_tokens * int(voiced * UNITS)
    )
    return -(-numerator // 10**6)


@dataclass(frozen=True)
class Books:
    """One call: what the fake billed, what the ledger charged and reserved (USD units)."""

    billed: int
    charged: int
    reserved: int


async def books(stack: Stack, tenant: str = "alpha") -> list[Books]:
    """Every call the tenant made, once each reservation is settled: reserved and charged from
    its audit trail, billed from the fake's books, in order."""

    async def settled() -> tuple[list[Books]] | None:
        trail = await stack.stores.tenants.audit(tenant)
        reserved = {
            e.fields["reservation"]: _usd(e.fields["amounts"])
            for e in trail
            if e.kind == "reserve" and e.fields.get("decision") != "DENY"
        }
        charged = {
            e.fields["reservation"]: _usd(e.fields["charged"])
            for e in trail
            if e.kind in ("commit", "release") and "charged" in e.fields
        }
        if not len(charged) == len(reserved) == len(stack.fake.billed):
            return None
        bills = [billed_cost(b) for b in stack.fake.billed]
        return ([Books(b, charged[r], reserved[r]) for b, r in zip(bills, reserved, strict=True)],)

    (found,) = await eventually(settled, f"every call of {tenant} settled and billed")
    return found


async def one_call(stack: Stack, tenant: str = "alpha") -> Books:
    """The tenant's only call, checked: charged exactly what the fake billed, within what it
    reserved."""
    [call] = await books(stack, tenant)
    assert call.billed == call.charged <= call.reserved, call
    return call


def _usd(amounts: str) -> int:
    found = dict(part.split("=") for part in amounts.split(","))
    return int(found["USD"])
