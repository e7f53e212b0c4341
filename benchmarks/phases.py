"""The phases of a benchmark run, against targets that are all serving at once.

The machine is shared (other processes come and go), so latency and throughput are measured in
rounds that take turns over every target and mode: a burst of noise then falls on all of them
alike instead of on whichever target happened to be running, and the comparisons between
targets (added latency, CPU per request against the passthrough) stay fair.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from benchmarks import ledger_calls, procs
from benchmarks.load import LoadResult, Mode, chat_body, run_load, scope_headers

MODES: tuple[Mode, Mode] = ("json", "stream")
CONCURRENCY = (16, 64)


@dataclass(frozen=True)
class Sizes:
    warmup: int
    latency_requests: int
    """Per target and mode, at concurrency 1, over all rounds."""
    seconds: float
    """Per target, mode and concurrency, over all rounds."""
    rounds: int
    ledger_calls: int
    """Calls counted with MONITOR, per mode."""
    rss_checkpoints: tuple[int, ...]
    """Requests served by a fresh proxy process at which its memory is read."""


@dataclass
class Target:
    name: str
    url: str
    pids: list[int] = field(default_factory=list)
    """The proxy's processes (none for direct)."""
    store_pids: list[int] = field(default_factory=list)
    """redis-server, when the proxy uses it."""
    served: int = 0
    """Requests the proxy has answered since it started."""


@dataclass
class Tally:
    """One (target, mode, concurrency) summed over rounds."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    store_cpu_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ttfb_ms: list[float] = field(default_factory=list)

    def add(self, result: LoadResult, cpu: float = 0.0, store_cpu: float = 0.0) -> None:
        self.requests += result.requests
        self.errors += result.errors
        self.seconds += result.seconds
        self.cpu_seconds += cpu
        self.store_cpu_seconds += store_cpu
        self.latencies_ms += result.latencies_ms
        self.ttfb_ms += result.ttfb_ms

    def rate(self) -> float:
        return round(self.requests / self.seconds, 1) if self.seconds else 0.0

    def cpu_us(self, store: bool = False) -> float:
        used = self.store_cpu_seconds if store else self.cpu_seconds
        return round(used / self.requests * 1e6, 1) if self.requests else 0.0


Tallies = dict[tuple[str, Mode, int], Tally]


def percentile(samples: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * p // 100))
    return round(ordered[int(rank) - 1], 3)


async def load(target: Target, mode: Mode, concurrency: int, **kwargs: Any) -> LoadResult:
    result = await run_load(target.url, mode, concurrency, **kwargs)
    target.served += result.requests
    if result.errors:
        print(
            f"  {target.name} {mode} c={concurrency}: {result.errors} errors, "
            f"first: {result.first_error}",
            file=sys.stderr,
        )
    return result


async def timed_load(
    target: Target, mode: Mode, concurrency: int, **kwargs: Any
) -> tuple[LoadResult, float, float]:
    """(load, proxy CPU seconds, store CPU seconds) over the load (`kwargs` as run_load's)."""
    proxy_before = procs.cpu_seconds(target.pids)
    store_before = procs.cpu_seconds(target.store_pids)
    result = await load(target, mode, concurrency, **kwargs)
    proxy = procs.cpu_seconds(target.pids) - proxy_before
    store = procs.cpu_seconds(target.store_pids) - store_before
    return result, proxy, store


async def warm_up(targets: list[Target], sizes: Sizes) -> None:
    for target in targets:
        for mode in MODES:
            await load(target, mode, 16, count=sizes.warmup)


async def latency_rounds(targets: list[Target], sizes: Sizes) -> Tallies:
    """Every request timed, at concurrency 1, and the proxy's CPU time over them."""
    tallies: Tallies = defaultdict(Tally)
    count = sizes.latency_requests // sizes.rounds
    for _ in range(sizes.rounds):
        for target in targets:
            for mode in MODES:
                result, cpu, store = await timed_load(target, mode, 1, count=count, record=True)
                tallies[target.name, mode, 1].add(result, cpu, store)
    return tallies


async def throughput_rounds(targets: list[Target], sizes: Sizes) -> Tallies:
    """Requests per second and CPU per request at each concurrency."""
    tallies: Tallies = defaultdict(Tally)
    seconds = sizes.seconds / sizes.rounds
    for _ in range(sizes.rounds):
        for target in targets:
            for mode in MODES:
                for c in CONCURRENCY:
                    result, cpu, store = await timed_load(target, mode, c, seconds=seconds)
                    tallies[target.name, mode, c].add(result, cpu, store)
    return tallies


def figures(target: Target, mode: Mode, tallies: Tallies) -> dict[str, Any]:
    """One target and mode: latency, throughput and CPU, as the results file keeps them."""
    timed = tallies[target.name, mode, 1]
    by_c = {str(c): tallies[target.name, mode, c] for c in (1, *CONCURRENCY)}
    row = {
        "latency_p50_ms": percentile(timed.latencies_ms, 50),
        "latency_p99_ms": percentile(timed.latencies_ms, 99),
        "ttfb_p50_ms": percentile(timed.ttfb_ms, 50),
        "ttfb_p99_ms": percentile(timed.ttfb_ms, 99),
        "latency_samples": len(timed.latencies_ms),
        "rps": {c: t.rate() for c, t in by_c.items()},
        "cpu_us_per_request": {c: t.cpu_us() if target.pids else None for c, t in by_c.items()},
        "store_cpu_us_per_request": {
            c: t.cpu_us(store=True) if target.store_pids else None for c, t in by_c.items()
        },
        "errors": sum(t.errors for t in by_c.values()),
    }
    print(
        f"  {target.name:14} {mode:6} p50 {row['latency_p50_ms']} ms  p99 {row['latency_p99_ms']}"
        f" ms  req/s {row['rps']}  CPU µs/req {row['cpu_us_per_request']}"
    )
    return row


async def count_ledger_calls(target: Target, redis_url: str, sizes: Sizes) -> dict[str, Any]:
    """Client commands Redis saw per budgeted call, by mode."""
    counted: dict[str, Any] = {}
    for mode in MODES:
        async with ledger_calls.monitor(redis_url) as lines:
            result = await load(target, mode, 16, count=sizes.ledger_calls)
        calls, background = ledger_calls.classify(lines)
        n = result.requests
        counted[mode] = {
            "calls": n,
            "per_call": {name: round(count / n, 3) for name, count in sorted(calls.items())},
            "round_trips_per_call": round(sum(calls.values()) / n, 3),
            "background": dict(background),
        }
        print(f"  ledger commands per {mode} call: {counted[mode]['per_call']}")
    return counted


async def memory_growth(target: Target, sizes: Sizes) -> list[dict[str, float]]:
    """The memory of a fresh proxy process after it has served each checkpoint's number of
    requests (JSON and stream alternating, concurrency 64)."""
    readings = [{"requests": target.served, **procs.memory_mib(target.pids[0])}]
    for checkpoint in sizes.rss_checkpoints:
        await load(target, "mixed", 64, count=max(0, checkpoint - target.served))
        readings.append({"requests": target.served, **procs.memory_mib(target.pids[0])})
        print(f"  {target.name}: after {target.served} requests RSS {readings[-1]['rss']:.1f} MiB")
    return readings


async def compare_workers(one: Target, two: Target, parent: int, sizes: Sizes) -> dict[str, Any]:
    """CPU per request at concurrency 64 of one worker and of `--workers 2` (both on the proxy
    core), in alternating rounds; then each process's memory."""
    workers = procs.children(parent)
    two.pids = [parent, *workers]
    for mode in MODES:
        await load(two, mode, 64, count=sizes.warmup)
    tallies: dict[tuple[Mode, str], Tally] = defaultdict(Tally)
    seconds = sizes.seconds / sizes.rounds
    for _ in range(sizes.rounds):
        for mode in MODES:
            for label, target in (("1", one), ("2", two)):
                result, cpu, _ = await timed_load(target, mode, 64, seconds=seconds)
                tallies[mode, label].add(result, cpu)
    found: dict[str, Any] = {
        "cpu_us_per_request": {m: {w: tallies[m, w].cpu_us() for w in "12"} for m in MODES},
        "rps": {m: {w: tallies[m, w].rate() for w in "12"} for m in MODES},
        "memory": {
            "one worker": procs.memory_mib(one.pids[0]),
            "parent": procs.memory_mib(parent),
            **{f"worker-{i}": procs.memory_mib(pid) for i, pid in enumerate(workers)},
        },
    }
    print(f"  --workers 2: CPU µs/req {found['cpu_us_per_request']}")
    return found


async def sanity_check(target: Target) -> None:
    """One JSON call: a 200 with usage (and, through cycles-proxy, a decision header)."""
    url = target.url + "/v1/chat/completions"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=chat_body(False), headers=scope_headers()[0]) as response,
    ):
        body = await response.json()
        if response.status != 200 or "usage" not in body:
            raise RuntimeError(f"{target.name}: {response.status} {body}")
        if target.name.startswith("cycles") and "X-Cycles-Decision" not in response.headers:
            raise RuntimeError(f"{target.name}: no X-Cycles-Decision header")
    target.served += 1
