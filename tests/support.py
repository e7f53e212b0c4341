"""Helpers shared by the proxy tests: policies written as operators write them, and oracles.

The oracles never ask the proxy: prompt tokens come from the fake provider's own counter
(proxy/testing/fake_tokens.py, the providers' published rules), costs from DESIGN.md's formula
written here."""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import aiohttp
import pytest
import redis
from conftest import free_port
from ledger_support import every_row

from proxy.core.types import UNITS_PER_USD
from proxy.metering.pricing import Usage
from proxy.policy import load_policy
from proxy.policy.prices import ModelPrice
from proxy.policy.runtime import Policy
from proxy.store.api_keys import Keys
from proxy.store.api_keys.redis import EVENTS
from proxy.store.ledger.base import BalanceRow, Ledger
from proxy.store.redis.clients import is_redis, open_client
from proxy.testing import fake_tokens
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.local import serving

T = TypeVar("T")

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


async def eventually(
    condition: Callable[[], T | Awaitable[T]], what: str, within: float = 10.0
) -> T:
    """Poll `condition` (a function, sync or async) until it returns something truthy, and
    return that. After `within` seconds fail, saying `what` never happened and what the
    condition returned last: a test waits for an effect this way, never by sleeping."""
    deadline = time.monotonic() + within
    pause = 0.005
    while True:
        result: Any = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return cast(T, result)
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {within:g} s (last seen: {result!r})")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.1)


def dated(before: datetime, fmt: str) -> set[str]:
    """`fmt` (strftime, UTC) at `before` and now: what a store that dated something in between
    (by its own clock: Redis TIME) may have written, whichever side of a day or month boundary
    it fell. One format holding several fields (`m%Y%m01 d%Y%m%d`) keeps them of one instant."""
    return {before.strftime(fmt), datetime.now(UTC).strftime(fmt)}


def policy(
    tmp_path: Path,
    budgets: str,
    mode: str = "enforce",
    plan: str = "",
    *,
    writes_at_input: bool = False,
) -> Policy:
    """The test policy with these budgets on plan `test`; `plan` adds more of the plan
    (quotas, degrade) as YAML written at the plan's indentation. `writes_at_input` prices
    gpt-4o-mini's cache writes at its input price (`cache_write: 0.15`, as an operator whose
    provider never bills writes above input writes it): its chat calls then reserve exactly
    what the fake bills for the whole limit (`mini_cost`), so a budget of k calls is an exact
    fit for the k-th whatever order they settle in."""
    indented = "\n".join("      " + line for line in budgets.strip().splitlines())
    extra = "\n".join("    " + line for line in textwrap.dedent(plan).strip().splitlines())
    text = POLICY.format(budgets=indented, mode=mode, extra=extra)
    if writes_at_input:
        mini = "gpt-4o-mini: {input: 0.15, cached_input: 0.075, output: 0.60"
        assert text.count(mini) == 1
        text = text.replace(mini, f"{mini}, cache_write: {MINI_INPUT}")
    path = tmp_path / "policy.yaml"
    path.write_text(text)
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
    """DESIGN.md's formula, written independently of proxy.metering.pricing:
    ceil(Σ tokens × price_per_1M_in_units / 10**6)."""
    numerator = prompt_tokens * int(MINI_INPUT * UNITS) + completion_tokens * int(
        MINI_OUTPUT * UNITS
    )
    return -(-numerator // 10**6)


OPENAI_WRITE_FACTOR = Decimal("1.25")
"""OpenAI may write any chat or Responses prompt to its cache and bill the writes at 1.25 times
the input price (its rule for the models that bill writes): on a model whose policy gives no
`cache_write`, such a prompt is reserved at that price."""


def mini_reserved(prompt_tokens: int, completion_tokens: int) -> int:
    """What a gpt-4o-mini chat (or Responses) call reserves: DESIGN.md's formula with every
    prompt token at the write price OpenAI may bill it at (the test policy prices no
    cache_write), written independently of proxy.metering.pricing. `mini_cost` is what it is charged
    when the provider reports no writes."""
    write = int(MINI_INPUT * OPENAI_WRITE_FACTOR * UNITS)
    numerator = prompt_tokens * write + completion_tokens * int(MINI_OUTPUT * UNITS)
    return -(-numerator // 10**6)


def admits_exactly(calls: int, reserved: int, charged: int) -> bool:
    """Whether a budget of `calls` reservations of `reserved` admits exactly `calls` calls each
    charged `charged`: what they leave unspent of their reservations holds no other call."""
    return calls * (reserved - charged) < reserved


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


async def following_key_events(keys: Keys, store_url: str) -> None:
    """Wait until the cache `keys`, whose watch() runs, follows the store's key events: it has
    subscribed, and emptied itself on doing so, so what it caches from now on stays until a
    change is announced. A probe cached here, then announced as changed, leaves the cache
    only after the subscription's emptying (messages arrive after the subscription's
    confirmation). memory:// has no events to follow."""
    if not is_redis(store_url):
        return
    probe = secrets.token_hex(32)
    before = len(keys)
    assert await keys.lookup(probe) is None  # cached as unknown…
    cached = len(keys)
    if cached == before:
        return  # …unless the cache was emptied (or a change announced) during the lookup
    client = open_client(store_url)
    try:
        await client.publish(EVENTS, f"key {probe}")
    finally:
        await client.aclose()
    await eventually(lambda: len(keys) < cached, "the key cache following key events")


async def settled(ledger: Ledger, tenant: str = "alpha", unit: str = "USD") -> BalanceRow:
    """The tenant's own budget line in `unit` once nothing is reserved on it (a call settles
    after its response has gone)."""

    async def settled_row() -> BalanceRow | None:
        rows = await every_row(ledger, tenant)
        mine = [r for r in rows if r.level == "tenant" and r.unit == unit]
        return mine[0] if mine and mine[0].reserved == 0 else None

    return await eventually(settled_row, f"{tenant}'s {unit} tenant line settling")


async def line(ledger: Ledger, tenant: str, level: str, value: str | None = None) -> BalanceRow:
    rows = [
        r
        for r in await every_row(ledger, tenant)
        if r.level == level and (value is None or r.value == value) and r.unit == "USD"
    ]
    assert len(rows) == 1, rows
    return rows[0]


class Monitored(list[str]):
    """MONITOR's lines for the client commands the Redis at `url` executed, in order."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    return host, int(port)


@asynccontextmanager
async def monitor(url: str) -> AsyncIterator[Monitored]:
    """The client commands Redis executes while the block runs, from MONITOR."""
    reader, writer = await asyncio.open_connection(*_address(url))
    writer.write(b"MONITOR\r\n")
    assert await reader.readline() == b"+OK\r\n"
    lines = Monitored(url)

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


async def commands_seen(commands: Monitored, expected: int) -> list[str]:
    """The names of the commands MONITOR reported (and takes them off `commands`), once
    `expected` have arrived and then a marker sent after them: an extra command that ran
    before the marker shows too. MONITOR's lines reach the reader after the commands ran, so a
    fixed sleep is not enough on a loaded machine."""
    await eventually(lambda: len(commands) >= expected, f"MONITOR reporting {expected} commands")
    marker = f"cycles-test-marker-{secrets.token_hex(8)}"
    reader, writer = await asyncio.open_connection(*_address(commands.url))
    try:
        writer.write(f"*2\r\n$4\r\nECHO\r\n${len(marker)}\r\n{marker}\r\n".encode())
        assert await reader.readline() == f"${len(marker)}\r\n".encode()
        assert await reader.readline() == f"{marker}\r\n".encode()
    finally:
        writer.close()
        await writer.wait_closed()
    end = await eventually(
        lambda: next((i + 1 for i, c in enumerate(commands) if marker in c), None),
        "MONITOR reporting the marker",
    )
    names = [c.split('"')[1].lower() for c in commands[: end - 1]]
    del commands[:end]
    return names


@asynccontextmanager
async def proxy_in_front_of(
    fake: FakeUpstream,
    policy_path: Path,
    store: str,
    drain: float = 0,
    *extra: str,
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`fake` served here, and `cycles-proxy serve` (proxy_process) in front of it."""
    async with (
        serving(fake.app()) as fake_url,
        proxy_process(
            policy_path, store, fake_url + "/v1", fake.settings.api_key, drain, *extra
        ) as started,
    ):
        yield started


STARTUP_S = 30.0
"""How long `proxy_process` waits for /healthz: generous, for a loaded machine."""
_OUTPUT: dict[asyncio.subprocess.Process, IO[bytes]] = {}
LISTENING = re.compile(r"listening on (\S+), admin on (\S+), metrics on (\S+) \(")
"""The proxy's startup log line, naming the addresses it bound (proxy/cli/serve.py)."""


@asynccontextmanager
async def proxy_process(
    policy_path: Path,
    store: str,
    upstream: str,
    key: str,
    drain: float = 0,
    *extra: str,
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`cycles-proxy serve` in a subprocess, ready when /healthz answers; yields (url,
    process). The proxy binds any free port (`--listen 127.0.0.1:0`; give `--admin-listen` or
    `--metrics-listen` port 0 in `extra` too) and names it in its startup line, so no other
    server can take a port picked for it in advance; `listening(process)` reads them all. Fails,
    with what the process printed, if it exits or is not healthy within STARTUP_S. A process
    still running at the end is stopped (SIGTERM, then SIGKILL); what it printed goes to this
    test's output (`printed(process)` reads it while it runs)."""
    env = {**os.environ, "OPENAI_API_KEY": key}
    args = ["serve", "--policy", str(policy_path), "--store", store, "--upstream", upstream]
    args += ["--admin-listen", "off", "--drain-timeout", str(drain), "--listen", "127.0.0.1:0"]
    with tempfile.TemporaryFile() as output:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "proxy", *args, *extra),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        _OUTPUT[proc] = output
        try:
            yield await _until_healthy(proc, output), proc
        finally:
            del _OUTPUT[proc]
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
            await proc.wait()
            sys.stdout.write(_printed(output))


def listening(proc: asyncio.subprocess.Process) -> dict[str, str | None]:
    """The base URLs a `proxy_process` listens on, from its startup line: `proxy`, `admin` and
    `metrics` (None for a listener that is off)."""
    found = LISTENING.search(printed(proc))
    assert found is not None, f"the proxy never named its ports; it printed:\n{printed(proc)}"
    return {
        name: None if address == "off" else f"http://{address}"
        for name, address in zip(("proxy", "admin", "metrics"), found.groups(), strict=True)
    }


async def _until_healthy(proc: asyncio.subprocess.Process, output: IO[bytes]) -> str:
    """The proxy's URL, once it has named its port and /healthz there answers."""
    url = ""

    async with aiohttp.ClientSession() as session:

        async def healthy_or_exited() -> bool:
            nonlocal url
            if proc.returncode is not None:
                return True
            if not url:
                found = LISTENING.search(_printed(output))
                if found is None:
                    return False
                url = f"http://{found[1]}"
            try:
                async with session.get(url + "/healthz") as r:
                    return r.status == 200 and (await r.json()).get("status") == "ok"
            except aiohttp.ClientConnectionError:
                return False

        never = None
        try:
            await eventually(
                healthy_or_exited, "the proxy naming its port and /healthz answering", STARTUP_S
            )
        except pytest.fail.Exception as exc:
            never = str(exc)
    if never is not None:
        pytest.fail(f"the proxy never became healthy: {never}; it printed:\n{_printed(output)}")
    if proc.returncode is not None:
        pytest.fail(
            f"the proxy exited with code {proc.returncode} before it became healthy; it printed:"
            f"\n{_printed(output)}"
        )
    return url


def printed(proc: asyncio.subprocess.Process) -> str:
    """What a process `proxy_process` started has printed so far (its log, on stderr)."""
    return _printed(_OUTPUT[proc])


def _printed(output: IO[bytes]) -> str:
    """What the process wrote so far (read without moving the offset it writes at)."""
    fd = output.fileno()
    return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")


class RedisProc:
    """A redis-server this test owns: killed with SIGKILL and started again on the same port.
    With `durable`, every write is fsynced to an append-only file, so data (and the ledger's
    epoch) survive the restart."""

    def __init__(self, workdir: Path, *, durable: bool = True, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.durable = durable
        self.args = args  # more server arguments: `--enable-debug-command yes` for DEBUG SLEEP
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--dir", str(self.workdir), "--maxmemory-policy", "noeviction"]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else []
        args += self.args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    if time.monotonic() > deadline:
                        pytest.fail("redis-server did not start within 10 s")
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


async def send(
    session: aiohttp.ClientSession, url: str, tenant: str = "alpha"
) -> tuple[int, dict[str, Any]]:
    """POST `chat()` to the proxy at `url` as `tenant`: its status and JSON answer."""
    async with session.post(
        url + "/v1/chat/completions", json=chat(), headers={"X-Cycles-Tenant": tenant}
    ) as r:
        return r.status, await r.json()


def flushall(url: str) -> None:
    """Empty the Redis at `url`, as a flush or a failover to an empty replica would."""
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
