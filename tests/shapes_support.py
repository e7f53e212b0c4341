"""A policy with an OpenAI and an Anthropic upstream, and the price oracle for both APIs."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

from proxy.fake_upstream import Billed
from proxy.policy import load_policy
from proxy.policy.runtime import Policy

UNITS = 10**8
# USD per 1M tokens: input, cached (cache read), cache write, output.
PRICES = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), Decimal("0.15"), Decimal("0.60")),
    "claude-sonnet-4": (Decimal(3), Decimal("0.30"), Decimal("3.75"), Decimal(15)),
}

POLICY = """
identity: header
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
  gpt-4o-mini: {{input: 0.15, cached_input: 0.075, output: 0.60}}
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
tenants:
  alpha: {{plan: test}}
"""


def shapes_policy(
    tmp_path: Path, budgets: str = "tenant: {limit: 50, period: month}", gateway: bool = False
) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(budgets=budgets))
    loaded = load_policy(path)
    return dataclasses.replace(loaded, identity="api_key") if gateway else loaded


def billed_cost(billed: Billed) -> int:
    """DESIGN.md's formula, written apart from proxy.pricing: cache reads at the cached-input
    price, cache writes at the cache-write price, the rest of the prompt at the input price."""
    fresh, cached, written, output = PRICES[billed.model]
    hour = billed.cache_write_1h_tokens
    uncached = billed.prompt_tokens - billed.cached_tokens - billed.cache_write_tokens - hour
    numerator = (
        uncached * int(fresh * UNITS)
        + billed.cached_tokens * int(cached * UNITS)
        + billed.cache_write_tokens * int(written * UNITS)
        + hour * 2 * int(fresh * UNITS)  # Anthropic: a one-hour cache write is 2× input
        + billed.completion_tokens * int(output * UNITS)
    )
    return -(-numerator // 10**6)


def units(usd: Decimal) -> int:
    return int(usd * UNITS)
