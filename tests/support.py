"""Helpers shared by the proxy tests: policies written as operators write them, and oracles.

The oracles never ask the proxy: prompt tokens come from the fake provider's own counter
(proxy/fake_tokens.py, the providers' published rules), costs from DESIGN.md's formula written
here."""

from __future__ import annotations

import asyncio
import math
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp

from proxy import fake_tokens
from proxy.fake_upstream import FakeUpstream
from proxy.ledger.base import BalanceRow, Ledger
from proxy.local import serving
from proxy.policy import load_policy
from proxy.policy.runtime import UNITS_PER_USD, ModelPrice, Policy
from proxy.pricing import Usage

UNITS = 10**8
# gpt-4o-mini in the test policies: USD per 1M tokens, and the same in ledger units per 1M.
MINI_INPUT, MINI_OUTPUT = Decimal("0.15"), Decimal("0.60")
PRICES = {
    "gpt-4o-mini": (MINI_INPUT, MINI_OUTPUT),
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
}

POLICY = """
mode: {mode}
fail_mode: closed
identity: header
unknown_tenant: deny
upstreams:
  openai: {{base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}}
routes:
  - {{model: "*", upstream: openai}}
models:
  gpt-4o-mini: {{input: 0.15, cached_input: 0.075, output: 0.60}}
  gpt-4o: {{input: 2.50, cached_input: 1.25, output: 10.00}}
  text-embedding-3-small: {{input: 0.02, output: 0}}
  gpt-3.5-turbo-instruct: {{input: 1.50, output: 2.00}}
plans:
  test:
    default_max_tokens: 100
    budgets:
{budgets}
{extra}
tenants:
  alpha: {{plan: test}}
  beta: {{plan: test}}
  gamma: {{plan: test, mode: shadow}}
"""


def policy(tmp_path: Path, budgets: str, mode: str = "enforce", plan: str = "") -> Policy:
    """The test policy with these budgets on plan `test`; `plan` adds more of the plan
    (quotas, degrade) as YAML written at the plan's indentation."""
    indented = "\n".join("      " + line for line in budgets.strip().splitlines())
    extra = "\n".join("    " + line for line in textwrap.dedent(plan).strip().splitlines())
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(budgets=indented, mode=mode, extra=extra))
    return load_policy(path)


def chat(content: str = "hi", max_tokens: int = 100, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        **extra,
    }


def cost(model: str, prompt_tokens: int, completion_tokens: int) -> int:
    """DESIGN.md's formula with the test policy's prices."""
    input_price, output_price = PRICES[model]
    numerator = prompt_tokens * int(input_price * UNITS) + completion_tokens * int(
        output_price * UNITS
    )
    return -(-numerator // 10**6)


def mini_cost(prompt_tokens: int, completion_tokens: int) -> int:
    """DESIGN.md's formula, written independently of proxy.pricing:
    ceil(Σ tokens × price_per_1M_in_units / 10**6)."""
    numerator = prompt_tokens * int(MINI_INPUT * UNITS) + completion_tokens * int(
        MINI_OUTPUT * UNITS
    )
    return -(-numerator // 10**6)


def chat_prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt tokens the fake provider bills for a chat request (the OpenAI cookbook's rule,
    counted by the fake, not by the proxy)."""
    return fake_tokens.chat_prompt_tokens(body)


# -- a price table and DESIGN.md's formula over ModelPrice, for the pricing and money tests ------


def price(input: int, cached_input: int, output: int) -> ModelPrice:
    return ModelPrice("test-model", input=input, cached_input=cached_input, output=output)


def usd_per_million(dollars: str) -> int:
    """A price as an operator writes it (USD per 1M tokens) in units, the way the loader must."""
    units = Decimal(dollars) * UNITS_PER_USD
    assert units == units.to_integral_value()
    return int(units)


def exact_cost(p: ModelPrice, usage: Usage) -> Fraction:
    """DESIGN: sum(tokens_k * price_k_per_1M_in_units) / 10**6, as an exact rational."""
    uncached = usage.prompt_tokens - usage.cached_tokens
    per_million = (
        uncached * p.input
        + usage.cached_tokens * p.cached_input
        + usage.completion_tokens * p.output
    )
    return Fraction(per_million, 10**6)


def oracle(p: ModelPrice, usage: Usage) -> int:
    """DESIGN: the exact cost rounded up, once."""
    return math.ceil(exact_cost(p, usage))


GPT_4O = price(usd_per_million("2.50"), usd_per_million("1.25"), usd_per_million("10.00"))
GPT_4O_MINI = price(usd_per_million("0.15"), usd_per_million("0.075"), usd_per_million("0.60"))
ODD = price(333, 1, 1_000_001)

TABLE = [
    # (price, prompt, cached, completion, expected units)
    (GPT_4O, 0, 0, 0, 0),
    (GPT_4O, 1000, 0, 500, 750_000),  # $0.0075
    (GPT_4O, 2000, 1500, 10, 322_500),
    (GPT_4O, 128_000, 0, 16_384, 48_384_000),
    (GPT_4O_MINI, 1, 0, 0, 15),
    (GPT_4O_MINI, 1, 1, 0, 8),  # 7.5 units, rounded up
    (GPT_4O_MINI, 3, 3, 1, 83),  # 22.5 + 60 = 82.5
    (ODD, 7, 0, 0, 1),  # 2331 / 10**6
    (ODD, 0, 0, 999_999, 1_000_000),  # (10**6 - 1)(10**6 + 1) / 10**6
    (ODD, 1, 1, 0, 1),
    (price(1, 1, 1), 1, 0, 0, 1),
    (price(10**6, 0, 0), 3, 0, 0, 3),  # divides exactly: no rounding up
]


def usd(units: int) -> str:
    """Units as a YAML USD amount with no rounding."""
    return str(Decimal(units) / UNITS)


async def line(ledger: Ledger, tenant: str, level: str, value: str | None = None) -> BalanceRow:
    rows = [
        r
        for r in await ledger.balances(tenant)
        if r.level == level and (value is None or r.value == value) and r.unit == "USD"
    ]
    assert len(rows) == 1, rows
    return rows[0]


@asynccontextmanager
async def monitor(url: str) -> AsyncIterator[list[str]]:
    """The client commands Redis executes while the block runs, from MONITOR."""
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"MONITOR\r\n")
    assert await reader.readline() == b"+OK\r\n"
    lines: list[str] = []

    async def collect() -> None:
        while line := await reader.readline():
            text = line.decode()
            if "[0 lua]" not in text:
                lines.append(text)

    task = asyncio.ensure_future(collect())
    try:
        yield lines
    finally:
        task.cancel()
        writer.close()
        await writer.wait_closed()


async def commands_seen(commands: list[str], expected: int) -> list[str]:
    """The command names MONITOR reported, once `expected` have arrived (or 2 s passed) and a
    little longer, so an extra command would show too. MONITOR's lines reach the reader after
    the commands ran, so a fixed sleep is not enough on a loaded machine."""
    for _ in range(200):
        if len(commands) >= expected:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    names = [c.split('"')[1].lower() for c in commands]
    commands.clear()
    return names


@asynccontextmanager
async def proxy_in_front_of(
    fake: FakeUpstream,
    policy_path: Path,
    store: str,
    drain: float = 0,
    *extra: str,
    log: Path | None = None,
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`fake` served here, and `cycles-proxy serve` (proxy_process) in front of it."""
    async with (
        serving(fake.app()) as fake_url,
        proxy_process(
            policy_path, store, fake_url + "/v1", fake.settings.api_key, drain, *extra, log=log
        ) as started,
    ):
        yield started


@asynccontextmanager
async def proxy_process(
    policy_path: Path,
    store: str,
    upstream: str,
    key: str,
    drain: float = 0,
    *extra: str,
    log: Path | None = None,
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`cycles-proxy serve` in a subprocess on a free port, ready when /healthz answers; yields
    (url, process). A process still running at the end is stopped (SIGTERM, then SIGKILL).
    With `log`, the process's log (its stderr) is written to that file."""
    from conftest import free_port

    port = free_port()
    env = {**os.environ, "OPENAI_API_KEY": key}
    args = ["serve", "--policy", str(policy_path), "--store", store, "--upstream", upstream]
    args += ["--admin-listen", "off", "--drain-timeout", str(drain), *extra]
    with ExitStack() as files:
        stderr = None if log is None else files.enter_context(log.open("wb"))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proxy",
            *args,
            "--listen",
            f"127.0.0.1:{port}",
            env=env,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert proc.returncode is None, "proxy process exited at start"
                await asyncio.sleep(0.05)
        yield url, proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
        await proc.wait()
