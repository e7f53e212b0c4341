"""A policy for the provider-breadth tests (per-model rules, reported token kinds, upstreams that
differ from OpenAI), an oracle for its prices, and small helpers."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
from support import OPENAI_WRITE_FACTOR

from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.testing.local import Stack

UNITS = 10**8
HEADERS = {"X-Cycles-Tenant": "alpha", "X-Cycles-Run": "r1"}

# USD per 1M tokens: the policy below, written again for the oracle.
PRICES: dict[str, dict[str, Decimal]] = {
    "gpt-4o-mini": {
        "input": Decimal("0.15"),
        "cached": Decimal("0.075"),
        "output": Decimal("0.60"),
    },
    "gpt-4o": {"input": Decimal("2.50"), "cached": Decimal("1.25"), "output": Decimal(10)},
    "o3-mini": {"input": Decimal("1.10"), "cached": Decimal("0.55"), "output": Decimal("4.40")},
    "gpt-4o-audio-preview": {
        "input": Decimal("2.50"),
        "output": Decimal(10),
        "audio_input": Decimal(40),
        "audio_output": Decimal(80),
    },
    "gpt-3.5-turbo-instruct": {"input": Decimal("1.50"), "output": Decimal(2)},
    "text-embedding-3-small": {"input": Decimal("0.02"), "output": Decimal(0)},
    "llama-3.1-8b": {"input": Decimal("0.10"), "output": Decimal("0.20")},
}

VLLM = """
vllm: {base_url: "http://vllm.internal:8000/v1", include_usage: false}
"""
"""An upstream that refuses stream_options, for `upstreams=`."""

POLICY = """
identity: header
{top}
upstreams:
  openai: {{base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}}
{upstreams}
routes:
{routes}
  - {{model: "*", upstream: openai}}
models:
  gpt-4o-mini: {{input: 0.15, cached_input: 0.075, output: 0.60}}
  gpt-4o: {{input: 2.50, cached_input: 1.25, output: 10.00}}
  o3-mini: {{input: 1.10, cached_input: 0.55, output: 4.40}}
  gpt-4o-audio-preview: {{input: 2.50, output: 10.00, audio_input: 40, audio_output: 80}}
  gpt-3.5-turbo-instruct: {{input: 1.50, output: 2.00}}
  text-embedding-3-small: {{input: 0.02, output: 0}}
{models}
plans:
  test:
    default_max_tokens: 100
    budgets:
      {budgets}
{plan}
tenants:
  alpha: {{plan: test}}
"""


def breadth_policy(
    tmp_path: Path,
    *,
    budgets: str = "tenant: {limit: 50, period: month}",
    upstreams: str = "",
    routes: str = "",
    models: str = "",
    plan: str = "",
    top: str = "",
) -> Policy:
    """The policy above; each argument is YAML for its section, written without indentation."""

    def indent(text: str, by: int) -> str:
        return textwrap.indent(textwrap.dedent(text).strip(), " " * by)

    path = tmp_path / "policy.yaml"
    path.write_text(
        POLICY.format(
            budgets=budgets,
            upstreams=indent(upstreams, 2),
            routes=indent(routes, 2),
            models=indent(models, 2),
            plan=indent(plan, 4),
            top=indent(top, 0),
        )
    )
    return load_policy(path)


def cost(model: str, **tokens: int) -> int:
    """DESIGN.md's formula, written apart from proxy.metering.pricing. `tokens` by price name:
    input, cached, output, audio_input, audio_output, cache_write (each kind priced once, at its
    own price; no model here prices cache writes, so a write is OpenAI's 1.25 times input)."""
    prices = {**PRICES[model], "cache_write": PRICES[model]["input"] * OPENAI_WRITE_FACTOR}
    numerator = sum(count * int(prices[kind] * UNITS) for kind, count in tokens.items())
    return -(-numerator // 10**6)


def sdk(stack: Stack, **kwargs: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, **kwargs
    )


def sent_bodies(stack: Stack) -> list[dict[str, Any]]:
    """The bodies the fake provider received, in order."""
    return [body for _, _, body in stack.fake.requests]
