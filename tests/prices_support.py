"""A policy that prices more than tokens (service tiers, hosted tools, long context, documents,
Claude's tool prompt), the oracle for what the fake provider billed under it, and a way to see
what one call reserved.

The oracle is DESIGN.md's formula written here, apart from proxy.metering.pricing: every token at
its price (the long-context prices when the fake says the prompt was above the threshold, but for
audio tokens, which keep their own price at any size; a one-hour cache write at twice the input
price, as Anthropic lists it), times the tier's factor, plus each hosted tool use at its fee,
rounded up once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import openai
import orjson
from support import eventually

from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.store.ledger.base import BalanceRow, Ledger
from proxy.testing.fake_openai import Billed

T = TypeVar("T")
UNITS = 10**8
HEADERS = {"X-Cycles-Tenant": "alpha"}
LONG_ABOVE = 2000
"""The long-context threshold of claude-sonnet-4-5 here, and of the fake in these tests."""


@dataclass(frozen=True)
class Prices:
    """USD per 1M tokens. `cache_write` is what the provider bills a (5-minute) cache write:
    Anthropic's listed price, and for OpenAI's chat models 1.25 times input, its rule for the
    models that bill writes (the completions and embeddings models never write)."""

    input: str
    cached: str
    cache_write: str
    output: str
    audio_input: str | None = None
    """None: audio tokens at the text input price."""
    audio_output: str | None = None


PRICES = {
    "gpt-4o": Prices("2.50", "1.25", "3.125", "10"),
    "gpt-4": Prices("30", "30", "37.50", "60"),
    "o1": Prices("15", "7.50", "18.75", "60"),
    "gpt-5": Prices("1.25", "0.125", "1.5625", "10"),
    "gpt-4o-mini": Prices("0.15", "0.075", "0.1875", "0.60"),
    "gpt-audio-long": Prices("2.50", "1.25", "3.125", "10", audio_input="40", audio_output="80"),
    "claude-sonnet-4": Prices("3", "0.30", "3.75", "15"),
    "claude-sonnet-4-5": Prices("3", "0.30", "3.75", "15"),
    "claude-haiku-4": Prices("1", "0.10", "1.25", "5"),
    "claude-opus-4-7": Prices("5", "0.50", "6.25", "25"),
    "gpt-3.5-turbo-instruct": Prices("1.50", "1.50", "1.50", "2"),
    "text-embedding-3-small": Prices("0.02", "0.02", "0.02", "0"),
}
LONG = {
    "claude-sonnet-4-5": Prices("6", "0.60", "7.50", "22.50"),
    "gpt-audio-long": Prices("5", "2.50", "6.25", "15"),
}
TIERS = {
    "gpt-5": {"priority": Fraction(2), "flex": Fraction(1, 2)},
    "gpt-4o-mini": {"flex": Fraction(1, 2)},
}
FEES = {
    "gpt-5": {
        "web_search": "0.01",
        "file_search": "0.0025",
        "code_interpreter": "0.03",
        "mcp": "0",  # OpenAI bills a remote MCP server's calls by the tokens they add alone
    },
    "claude-sonnet-4": {"web_search": "0.01"},
}
PRICED_AS = {"gpt-4o-2024-08-06": "gpt-4o", "gpt-4-0613": "gpt-4", "chatgpt-4o-latest": "gpt-4o"}
PRICED_AS["claude-sonnet-4-20250514"] = "claude-sonnet-4"

POLICY = f"""
identity: header
upstreams:
  openai:
    base_url: "https://api.openai.com/v1"
    api_key_env: OPENAI_API_KEY
    models: {{chatgpt-4o-latest: {{price: gpt-4o}}}}
  anthropic: {{base_url: "https://api.anthropic.com/v1", api_key_env: ANTHROPIC_API_KEY,
              auth: x-api-key}}
routes:
  - {{model: "claude-*", upstream: anthropic}}
  - {{model: "*", upstream: openai}}
models:
  gpt-4o: {{input: 2.50, cached_input: 1.25, output: 10}}
  gpt-4: {{input: 30, output: 60}}
  o1: {{input: 15, cached_input: 7.50, output: 60}}
  gpt-5:
    input: 1.25
    cached_input: 0.125
    output: 10
    service_tiers: {{priority: 2, flex: 0.5}}
    tool_calls:
      web_search: {{per_call: 0.01, input_tokens: 600}}
      file_search: 0.0025
      code_interpreter: {{per_call: 0.03, input_tokens: 600}}
    documents: {{tokens_per_file: 3000}}
  gpt-4o-mini: {{input: 0.15, cached_input: 0.075, output: 0.60, service_tiers: {{flex: 0.5}}}}
  gpt-audio-long:
    input: 2.50
    cached_input: 1.25
    output: 10
    audio_input: 40
    audio_output: 80
    image_input: 20
    image_token_factor: 1
    long_context: {{above: {LONG_ABOVE}, input: 5, cached_input: 2.50, output: 15}}
  claude-sonnet-4:
    input: 3
    cached_input: 0.30
    cache_write: 3.75
    output: 15
    tokenizer_factor: 1.2
    tool_calls: {{web_search: {{per_call: 0.01, input_tokens: 600}}}}
    documents: {{tokens_per_page: 1500, pages: 4}}
  claude-sonnet-4-5:
    input: 3
    cached_input: 0.30
    cache_write: 3.75
    output: 15
    tokenizer_factor: 1.2
    long_context: {{above: {LONG_ABOVE}, input: 6, cached_input: 0.60, cache_write: 7.50,
                   output: 22.50}}
  claude-haiku-4: {{input: 1, cached_input: 0.10, cache_write: 1.25, output: 5,
                   tokenizer_factor: 1.2}}
  claude-opus-4-7: {{input: 5, cached_input: 0.50, cache_write: 6.25, output: 25,
                    tokenizer_factor: 1.2}}
  gpt-3.5-turbo-instruct: {{input: 1.50, output: 2}}
  text-embedding-3-small: {{input: 0.02, output: 0}}
plans:
  test:
    default_max_tokens: 100
    default_max_tool_calls: 4
    budgets:
      tenant: {{limit: {{limit}}, period: month}}
tenants:
  alpha: {{plan: test}}
"""


def prices_policy(tmp_path: Path, limit: str = "50", degrade: str = "") -> Policy:
    """The policy above with the tenant's budget at `limit` USD, and `degrade` (a YAML flow list
    of rules) on its plan."""
    path = tmp_path / "policy.yaml"
    rules = f"    degrade: {degrade}\n" if degrade else ""
    path.write_text(
        POLICY.replace("{limit}", limit).replace("    budgets:\n", rules + "    budgets:\n")
    )
    return load_policy(path)


def edited_policy(tmp_path: Path, old: str, new: str) -> Policy:
    """The policy above ($50 budget) with `old` (which must occur once) replaced by `new`."""
    text = POLICY.replace("{limit}", "50")
    assert text.count(old) == 1, old
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace(old, new))
    return load_policy(path)


def _per_million(usd: str) -> int:
    return int(Decimal(usd) * UNITS)


def billed_cost(billed: Billed) -> int:
    """What the fake's bill costs under the policy above, by DESIGN's formula."""
    model = PRICED_AS.get(billed.model, billed.model)
    # A model without long-context prices bills every prompt size alike.
    p = LONG.get(model, PRICES[model]) if billed.long_context else PRICES[model]
    # Audio keeps the model's own audio price at any prompt size (none: the text price).
    audio_in = PRICES[model].audio_input or p.input
    audio_out = PRICES[model].audio_output or p.output
    hour = billed.cache_write_1h_tokens
    fresh = billed.prompt_tokens - billed.cached_tokens - billed.cache_write_tokens - hour
    fresh -= billed.audio_prompt_tokens
    text_out = billed.completion_tokens - billed.audio_completion_tokens
    tokens = (
        fresh * _per_million(p.input)
        + billed.cached_tokens * _per_million(p.cached)
        + billed.cache_write_tokens * _per_million(p.cache_write)
        + hour * 2 * _per_million(p.input)  # Anthropic: a one-hour cache write is 2× input
        + billed.audio_prompt_tokens * _per_million(audio_in)
        + text_out * _per_million(p.output)
        + billed.audio_completion_tokens * _per_million(audio_out)
    )
    factor = Fraction(1)
    if billed.service_tier != "default":
        factor = TIERS[model][billed.service_tier]
    fees = sum(n * _per_million(FEES[model][tool]) for tool, n in billed.tool_calls.items())
    exact = Fraction(tokens) * factor / 10**6 + fees
    return -(-exact.numerator // exact.denominator)


async def tenant_row(ledger: Ledger) -> BalanceRow:
    rows = [r for r in await ledger.balances("alpha") if r.level == "tenant" and r.unit == "USD"]
    return rows[0] if rows else BalanceRow("tenant", "alpha", "USD", "", 0, 0, 0)


@dataclass(frozen=True)
class Measured:
    status: int
    answer: dict[str, Any]
    """The JSON answer ({} for a stream)."""
    reserved: int
    """What the call held while it ran upstream (0 if it never got there)."""
    charged: int


async def measured(
    http: aiohttp.ClientSession,
    url: str,
    ledger: Ledger,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> Measured:
    """One call, with what it reserved (read while the fake, told to be slow, is answering)
    and what it was charged once settled."""

    async def send() -> tuple[int, dict[str, Any]]:
        async with http.post(url, json=body, headers={**HEADERS, **(headers or {})}) as r:
            raw = await r.read()
            return r.status, {} if body.get("stream") and r.ok else orjson.loads(raw)

    (status, answer), reserved, charged = await measured_call(ledger, send())
    return Measured(status, answer, reserved, charged)


async def measured_call(ledger: Ledger, call: Awaitable[T]) -> tuple[T, int, int]:
    """What `call` (made by any client: aiohttp, the openai SDK, ...) returned, what the tenant
    line held while it ran upstream (the fake must be slow: 0 if it never got there), and what
    it was charged once settled."""
    before = (await tenant_row(ledger)).spent
    running = asyncio.ensure_future(call)
    # Sampled while the call runs (a reservation lives only while the fake answers): no wait.
    reserved = 0
    while not running.done() and not reserved:
        reserved = (await tenant_row(ledger)).reserved
        await asyncio.sleep(0.005)
    result = await running

    async def settled() -> BalanceRow | None:
        row = await tenant_row(ledger)
        return row if row.reserved == 0 else None

    row = await eventually(settled, "the tenant line settling")
    return result, reserved, row.spent - before


async def transcribe(url: str, data: str, audio_format: str = "wav") -> Any:
    """One chat call to gpt-audio-long with the openai SDK, carrying the base64 audio `data`
    as an `input_audio` part (the proxy at `url`)."""
    async with openai.AsyncOpenAI(
        base_url=url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
    ) as sdk:
        part = {"type": "input_audio", "input_audio": {"data": data, "format": audio_format}}
        return await sdk.chat.completions.create(
            model="gpt-audio-long",
            messages=[{"role": "user", "content": [{"type": "text", "text": "Transcribe."}, part]}],  # type: ignore[list-item]
            max_completion_tokens=20,
        )
