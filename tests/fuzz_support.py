"""Running hypothesis against one in-process stack, on either store, and the oracles the fuzz
tests (tests/gateway/test_fuzz.py) check the ledger with.

Seeds. Every fuzz test runs under hypothesis's `@seed`, with one seed per pytest run:
`--hypothesis-seed=N` if given, else `CYCLES_FUZZ_SEED` (a number, or `random` for a fresh one),
else a fresh one when `CYCLES_FUZZ_EXAMPLES` asks for a soak run, else FIXED_SEED, so the
default `pytest -q` is reproducible. The seed is printed before the run and added to the error
of a failing one; the same seed and example count replay the same examples.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
from aiohttp import web
from hypothesis import HealthCheck, seed, settings
from multidict import CIMultiDictProxy

from proxy.core import tasks
from proxy.policy import load_policy
from proxy.store.ledger.base import BalanceRow
from proxy.testing.fake_openai import Billed
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.local import Stack, local_stack

T = TypeVar("T")

EXAMPLES = int(os.environ.get("CYCLES_FUZZ_EXAMPLES", "0"))
"""0: the quick run (each test's own count); otherwise examples per test and store (a soak)."""
SEED_ENV = "CYCLES_FUZZ_SEED"
FIXED_SEED = 20_240_917
"""The seed of the default run: any number would do, this one is just fixed."""


@functools.cache
def run_seed(cli_seed: str | None) -> int:
    """This pytest run's seed (the module docstring says how it is chosen)."""
    chosen = cli_seed if cli_seed is not None else os.environ.get(SEED_ENV, "")
    if chosen == "random" or (not chosen and EXAMPLES):
        return random.SystemRandom().randrange(2**32)
    return int(chosen) if chosen else FIXED_SEED


def fuzz(quick: int, seed_value: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """hypothesis's settings and seed for one fuzz test: `quick` examples unless a soak run
    names another count. No database (each run is its seed), no deadline (a loaded 2-core
    machine is slow), and the failing example's blob printed."""

    def apply(test: Callable[..., None]) -> Callable[..., None]:
        configured = settings(
            max_examples=EXAMPLES or quick,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        )(test)
        return seed(seed_value)(configured)

    return apply


def run_seeded(what: str, seed_value: int, test: Callable[[], None]) -> None:
    """Run the hypothesis test `test`, naming its seed before and, on failure, in the error."""
    print(f"{what}: hypothesis seed {seed_value}")
    try:
        test()
    except BaseException as exc:
        exc.add_note(
            f"{what}: hypothesis seed {seed_value}. Reproduce with {SEED_ENV}={seed_value} "
            f"(or --hypothesis-seed={seed_value}) and the same CYCLES_FUZZ_EXAMPLES."
        )
        raise


# -- prices: the policy's, written again for the oracle ------------------------------------------

UNITS_PER_USD = 10**8
PRICES: dict[str, tuple[str, str, str]] = {
    # model: USD per 1M tokens (input, cached input, output), as the policy writes them.
    "gpt-4o-mini": ("0.15", "0.075", "0.60"),
    "gpt-4o": ("2.50", "1.25", "10.00"),
    "o3-mini": ("1.10", "0.55", "4.40"),
    "gpt-4.1-mini": ("0.40", "0.10", "1.60"),
    "gpt-3.5-turbo-instruct": ("1.50", "1.50", "2.00"),
    "text-embedding-3-small": ("0.02", "0.02", "0"),
}


IMAGE_TOKEN_FACTORS = {"gpt-4o-mini": "33.34", "o3-mini": "1", "gpt-4.1-mini": "1"}
"""As policies/example.yaml declares them: gpt-4o-mini bills an image at 2833 + 5667 a tile,
33.34 times gpt-4o's rule (testing/fake_tokens.py). Without it a stream that reports no usage could
only be charged the image at gpt-4o's size: less than the provider billed. o3-mini and
gpt-4.1-mini have no published tile rule, so images on them are refused without a factor; the
fake bills them by gpt-4o's."""


def models_yaml() -> str:
    return "\n".join(
        f"  {name}: {{input: {i}, cached_input: {c}, output: {o}"
        + (
            f", image_token_factor: {IMAGE_TOKEN_FACTORS[name]}}}"
            if name in IMAGE_TOKEN_FACTORS
            else "}"
        )
        for name, (i, c, o) in PRICES.items()
    )


def _per_million(usd: str) -> int:
    return int(Decimal(usd) * UNITS_PER_USD)


def priced_as(model: str) -> str:
    """README: an exact entry, else the longest listed name a dated snapshot extends."""
    if model in PRICES:
        return model
    return max((name for name in PRICES if model.startswith(name + "-")), key=len)


def cost(model: str, prompt: int, completion: int, cached: int = 0) -> int:
    """DESIGN.md's formula: ceil(Σ tokens × price per 1M in units / 10**6), rounded once."""
    price_in, price_cached, price_out = (_per_million(p) for p in PRICES[priced_as(model)])
    numerator = (prompt - cached) * price_in + cached * price_cached + completion * price_out
    return -(-numerator // 10**6)


MAX_AMOUNT = 2**52
"""DESIGN.md: no amount may reach 2**52 units (Lua holds them as doubles); a larger report is
charged just below it."""


def billed_amounts(billed: Iterable[Billed]) -> dict[str, int]:
    """What the fake provider billed, per budget unit, as the ledger can hold it."""
    usd = tokens = 0
    for b in billed:
        usd += cost(b.model, b.prompt_tokens, b.completion_tokens, b.cached_tokens)
        tokens += b.prompt_tokens + b.completion_tokens
    return {"USD": min(usd, MAX_AMOUNT - 1), "TOKENS": min(tokens, MAX_AMOUNT - 1)}


# -- the ledger, read from the store --------------------------------------------------------------

Line = tuple[str, str, str]
"""(level, value, unit): one budget line, whatever its period."""


@dataclass(frozen=True)
class Sums:
    spent: int = 0
    reserved: int = 0
    credit: int = 0


async def ledger_lines(stack: Stack, tenant: str) -> dict[Line, Sums]:
    """The tenant's budget lines as the store holds them, summed over periods."""
    rows: list[BalanceRow] = await stack.ledger.balances(tenant)
    lines: dict[Line, Sums] = {}
    for r in rows:
        old = lines.get((r.level, r.value, r.unit), Sums())
        lines[(r.level, r.value, r.unit)] = Sums(
            old.spent + r.spent, old.reserved + r.reserved, old.credit + r.credit
        )
    return lines


SCOPE_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
"""DESIGN.md: what a scope header value may be (lowercased when used)."""


def scope_value(headers: Mapping[str, str], name: str) -> str | None:
    """The value a scope header names, as the ledger keys it; None if absent or invalid. HTTP
    strips the spaces and tabs around a header value."""
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip(" \t")
    return value.lower() if SCOPE_VALUE.fullmatch(value) else None


# -- the stack and the fake provider --------------------------------------------------------------


class Watched(FakeUpstream):
    """The fake provider, noting the ledger the moment a call reaches it (its reservation is
    open then), and answering an exception in its own code with a 400 that bills nothing (the
    provider refusing a request it cannot serve), so a fuzzed request cannot make it fail."""

    on_call: Callable[[], Awaitable[None]] | None = None

    def app(self) -> web.Application:
        app = super().app()
        app.middlewares.append(_watching(self))
        return app


def _watching(fake: Watched) -> Any:
    @web.middleware
    async def watch(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if fake.on_call is not None and request.method == "POST":
            await fake.on_call()
        billed = len(fake.billed)
        try:
            return await handler(request)
        except (web.HTTPException, ConnectionError):
            raise
        except Exception as exc:  # the provider refuses what it cannot serve
            del fake.billed[billed:]
            error = {"message": repr(exc), "type": "invalid_request_error", "code": None}
            return web.json_response({"error": {**error, "param": None}}, status=400)

    return watch


class Unhandled(logging.Handler):
    """Collects what the errors middleware logs as an unhandled exception."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def catching_unhandled() -> Iterator[Unhandled]:
    handler = Unhandled()
    logger = logging.getLogger("proxy.app")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@dataclass
class Driver:
    """One stack on one store, driven synchronously from inside hypothesis."""

    runner: asyncio.Runner
    stack: Stack
    fake: Watched
    session: aiohttp.ClientSession
    tenant: str = ""
    """Whose ledger the fake notes when a call reaches it."""
    at_upstream: list[dict[Line, Sums]] = field(default_factory=list)
    tenants: Iterator[int] = field(default_factory=itertools.count)

    def run(self, work: Awaitable[T]) -> T:
        return self.runner.run(_wrap(work))

    def fresh_tenant(self) -> str:
        """A tenant no example used before: every example starts from an empty ledger."""
        return f"t{next(self.tenants)}"

    async def settled(self) -> None:
        """Wait for the calls in flight: a call settles in its own task, which outlives a
        client that saw its answer cut."""
        calls = [t for t in tasks.running() if t.get_name().startswith("call ")]
        if calls:
            await asyncio.wait(calls, timeout=10)

    async def note_ledger(self) -> None:
        self.at_upstream.append(await ledger_lines(self.stack, self.tenant))


async def _wrap(work: Awaitable[T]) -> T:
    return await work


def drive(policy_path: Path, store: str, fake: Watched, check: Callable[[Driver], None]) -> None:
    """Start the stack once on a private loop, hand `check` a driver, and tear down."""
    with asyncio.Runner() as runner:
        stack_cm = local_stack(load_policy(policy_path), store=store, fake=fake, sweep_every=None)
        stack = runner.run(stack_cm.__aenter__())
        session = runner.run(_session())
        driver = Driver(runner, stack, fake, session)
        fake.on_call = driver.note_ledger
        try:
            check(driver)
        finally:
            runner.run(session.close())
            runner.run(stack_cm.__aexit__(None, None, None))


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: CIMultiDictProxy[str]


async def send(driver: Driver, path: str, body: bytes, headers: Mapping[str, str]) -> Answer:
    sent = {"Content-Type": "application/json", **headers}
    async with driver.session.post(driver.stack.url + path, data=body, headers=sent) as response:
        return Answer(response.status, await response.read(), response.headers)


def assert_openai_error(answer: Answer) -> dict[str, Any]:
    error = orjson.loads(answer.body)["error"]
    assert set(error) == {"message", "type", "code", "param"}, error
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def assert_not_ours(answer: Answer, unhandled: Unhandled) -> None:
    """No 500 from the proxy's own code: nothing logged as unhandled, no server_error body."""
    assert not unhandled.records, [r.getMessage() for r in unhandled.records]
    if answer.status >= 500:
        assert b"The proxy failed to handle this request" not in answer.body, answer.body


# -- what happened ---------------------------------------------------------------------------------


@dataclass
class Outcomes:
    """How the fuzzed calls ended, to print and to hold the strategies to reaching the budget
    path: admitted (2xx), denied by a budget (402) or by a quota (429)."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, label: str) -> None:
        self.counts[label] += 1

    def statuses(self) -> Counter[int]:
        found: Counter[int] = Counter()
        for label, n in self.counts.items():
            found[int(label.split()[0])] += n
        return found

    def share(self, matches: Callable[[str], bool]) -> float:
        """The share of calls whose label `matches`."""
        total = sum(self.counts.values())
        return sum(n for label, n in self.counts.items() if matches(label)) / max(1, total)

    def report(self, what: str, **shares: float) -> str:
        total = sum(self.counts.values())
        said = ", ".join(f"{share:.0%} {name.replace('_', ' ')}" for name, share in shares.items())
        lines = [f"{what}: {total} calls{', ' if said else ''}{said}"]
        lines += [f"  {n:5d}  {label}" for label, n in self.counts.most_common()]
        return "\n".join(lines)
