"""The benchmark run: every target, every phase, one results dictionary.

Targets, all behind the same fake provider (benchmarks/upstream.py, core 1), all serving at once:

    direct          the load generator talks to the fake provider itself
    passthrough     benchmarks/passthrough.py on core 0: the floor for an aiohttp proxy
    cycles-memory   `cycles-proxy serve` on core 0, memory:// store
    cycles-redis    the same on a private redis-server (core 1)
    litellm         with --with-litellm: LiteLLM's proxy on core 0 (benchmarks/litellm_target.py)
    (then `--workers 2` on the same Redis, both workers on core 0, next to one worker)

Each cycles-proxy process first serves the memory checkpoints' requests, fresh, with its memory
read at each. Then every target is warmed up, and measured per mode (JSON, stream of 20 chunks)
in rounds that take turns over the targets (phases.py): latency at concurrency 1 with every
request timed, then throughput at concurrency 16 and 64 with the proxy's CPU time read from
/proc before and after. The load generator is this process, on core 1 with the fake provider
and Redis; at concurrency 64 that core saturates before core 0, which is why CPU per request,
not requests per second, is the comparison that matters.
"""

from __future__ import annotations

import asyncio
import platform
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import litellm_target, procs
from benchmarks.phases import (
    MODES,
    Sizes,
    Target,
    compare_workers,
    count_ledger_calls,
    figures,
    latency_rounds,
    memory_growth,
    sanity_check,
    throughput_rounds,
    warm_up,
)
from benchmarks.procs import LOAD_CORE, PROXY_CORE, Service

POLICY = Path(__file__).resolve().parent / "policy.yaml"
PROVIDER_KEY = litellm_target.PROVIDER_KEY
CYCLES = ("cycles-memory", "cycles-redis")
LITELLM = "litellm"
FULL = Sizes(
    warmup=1000,
    latency_requests=2000,
    seconds=6.0,
    rounds=4,
    ledger_calls=1000,
    rss_checkpoints=(10_000, 100_000),
)
QUICK = Sizes(
    warmup=200,
    latency_requests=500,
    seconds=1.6,
    rounds=2,
    ledger_calls=200,
    rss_checkpoints=(2_000, 8_000),
)


Argv = Callable[[int], list[str]]
"""A service's command line, given the port it is to listen on."""


@asynccontextmanager
async def service(
    name: str,
    core: int,
    argv: Argv,
    log_dir: Path,
    env: dict[str, str] | None = None,
    health: str = "/healthz",
    within: float = 30.0,
) -> AsyncIterator[tuple[Service, str]]:
    """Start `argv` on a free port, pinned to `core`; yields it and its base URL once
    GET `health` answers (it fails if that takes over `within` seconds)."""
    port = procs.free_port()
    started = Service.start(name, core, argv(port), log_dir, env)
    url = f"http://127.0.0.1:{port}"
    try:
        await procs.wait_http(url + health, started, within)
        yield started, url
    finally:
        started.stop()


def cycles(upstream: str, store: str, workers: int = 1, via: tuple[str, ...] = ("proxy",)) -> Argv:
    """`cycles-proxy serve` as the benchmark runs it (default log level: one line per call).
    `via` is the module run with -m, and its arguments before `serve`."""
    return lambda port: procs.python(
        *via,
        *("serve", "--policy", str(POLICY), "--listen", f"127.0.0.1:{port}", "--store", store),
        *("--upstream", upstream + "/v1", "--admin-listen", "off", "--workers", str(workers)),
        *("--drain-timeout", "5"),
    )


def upstream_argv(port: int) -> list[str]:
    return procs.python("benchmarks.upstream", "--port", str(port))


async def run(sizes: Sizes, log_dir: Path, with_litellm: bool = False) -> dict[str, Any]:
    procs.pin_self()
    results: dict[str, Any] = {"meta": meta(sizes), "targets": {}, "memory": {}}
    machine_before, ours_before = procs.machine_cpu_seconds(), procs.own_cpu_seconds()
    async with AsyncExitStack() as stack:
        redis_service, redis_url = procs.start_redis(log_dir)
        stack.callback(redis_service.stop)
        targets = await start_targets(stack, redis_url, log_dir)
        upstream, cycles_redis = targets[0].url, targets[-1]
        cycles_redis.store_pids = [redis_service.pid]
        if with_litellm:
            results["meta"]["litellm"] = await add_litellm(stack, targets, upstream, log_dir)
        for target in targets:
            await sanity_check(target)
        for target in targets:
            if target.name in CYCLES:
                results["memory"][target.name] = await memory_growth(target, sizes)
        await warm_up(targets, sizes)
        tallies = {
            **await latency_rounds(targets, sizes),
            **await throughput_rounds(targets, sizes),
        }
        for target in targets:
            results["targets"][target.name] = {m: figures(target, m, tallies) for m in MODES}
        results["rss_at_end"] = {t.name: rss_at_end(t) for t in targets if t.pids}
        results["call_log_lines_per_call"] = {
            t.name: call_log_lines(t, log_dir) for t in targets if t.name in CYCLES
        }
        results["ledger_calls"] = await count_ledger_calls(cycles_redis, redis_url, sizes)
        results["workers"] = await workers(cycles_redis, upstream, redis_url, sizes, log_dir)
    machine = procs.machine_cpu_seconds() - machine_before
    others = machine - (procs.own_cpu_seconds() - ours_before)
    results["meta"]["load_average_at_end"] = procs.load_average()
    results["meta"]["other_processes_cpu_seconds"] = round(others, 1)
    results["meta"]["machine_cpu_seconds"] = round(machine, 1)
    return results


async def start_targets(stack: AsyncExitStack, redis_url: str, log_dir: Path) -> list[Target]:
    """The fake provider and every proxy in front of it: direct, passthrough, cycles-memory,
    cycles-redis."""
    _, upstream = await stack.enter_async_context(
        service("upstream", LOAD_CORE, upstream_argv, log_dir)
    )

    def floor(port: int) -> list[str]:
        return procs.python("benchmarks.passthrough", "--port", str(port), "--upstream", upstream)

    targets = [Target("direct", upstream)]
    pt, url = await stack.enter_async_context(service("passthrough", PROXY_CORE, floor, log_dir))
    targets.append(Target("passthrough", url, [pt.pid]))
    env = {"OPENAI_API_KEY": PROVIDER_KEY}
    for name, store in (("cycles-memory", "memory://"), ("cycles-redis", redis_url)):
        argv = cycles(upstream, store)
        cy, url = await stack.enter_async_context(service(name, PROXY_CORE, argv, log_dir, env))
        targets.append(Target(name, url, [cy.pid]))
    return targets


async def add_litellm(
    stack: AsyncExitStack, targets: list[Target], upstream: str, log_dir: Path
) -> dict[str, object]:
    """LiteLLM's proxy as one more target, installed first if need be; what the results say
    of it (or why it was not measured)."""
    try:
        version = litellm_target.install(log_dir)
    except (OSError, subprocess.CalledProcessError) as exc:
        return litellm_target.unavailable(f"installing {litellm_target.REQUIREMENT} failed: {exc}")
    config = litellm_target.write_config(upstream, log_dir)

    def argv(port: int) -> list[str]:
        return litellm_target.argv(config, port)

    env, health = litellm_target.ENV, litellm_target.HEALTH
    try:
        started, url = await stack.enter_async_context(
            service(LITELLM, PROXY_CORE, argv, log_dir, env, health, litellm_target.START_SECONDS)
        )
    except RuntimeError as exc:
        return litellm_target.unavailable(f"{exc} (benchmarks/results/logs/{LITELLM}.log)")
    targets.append(Target(LITELLM, url, [started.pid]))
    return litellm_target.available(version)


def rss_at_end(target: Target) -> dict[str, float]:
    """The proxy's memory after the latency and throughput rounds, and the calls it served."""
    return {"requests": target.served, **procs.memory_mib(target.pids[0])}


def call_log_lines(target: Target, log_dir: Path) -> float:
    """The proxy's call log lines per call it served: 1.0 when each call wrote its line, as
    by default in production (the check that the run measures that default)."""
    written = (log_dir / f"{target.name}.log").read_bytes().count(b'{"event":"call"')
    return round(written / target.served, 3)


async def workers(
    one: Target, upstream: str, redis_url: str, sizes: Sizes, log_dir: Path
) -> dict[str, Any]:
    """`--workers 2` on the same store, compared with the one-worker process `one`."""
    argv = cycles(upstream, redis_url, workers=2)
    env = {"OPENAI_API_KEY": PROVIDER_KEY}
    async with service("cycles-workers", PROXY_CORE, argv, log_dir, env) as (parent, url):
        two = Target("cycles-redis --workers 2", url)
        await sanity_check(two)
        await asyncio.sleep(1.0)  # both workers listening before the load's connections are spread
        return await compare_workers(one, two, parent.pid, sizes)


def meta(sizes: Sizes) -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=procs.REPO)
        return done.stdout.strip()

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "proxy_modified": bool(git("status", "--porcelain", "--", "proxy")),
        "cpu": models[0] if models else "unknown",
        "cores": len(models),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "load_average_at_start": procs.load_average(),
        "sizes": asdict(sizes),
    }
