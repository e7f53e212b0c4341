"""python -m benchmarks.profile [--concurrency N]: where cycles-proxy spends its CPU under load,
on the Redis store.

Two runs of the proxy as the benchmark runs it (core 0, through benchmarks/hooks.py, which
only watches), each warmed up first, then measured while the load generator sends JSON and
stream calls alternately at concurrency N (64 unless told; at 1 each call is alone, so the
cost of waking up for it is in the figures too):

1. py-spy (on core 1) samples the proxy with `--nonblocking`: it reads the process's memory
   without stopping it. Stopping it (py-spy's default) costs this VM so much that the proxy
   served 40 % fewer calls, and every sample then lands on a system call (getpid() showed
   as 15 % of the CPU; strace counts 31 calls of ~0.1 µs per request). Without stopping, some
   stacks are torn (their outer frames missing); self time uses every sample, inclusive time
   only the whole stacks. The hooks time the garbage collector meanwhile.
2. cProfile inside the proxy: exact call counts per request (its timings are inflated by its
   own overhead, so the shares are only indicative).

Writes its section of benchmarks/profile.md (one per concurrency; the others are kept), and the
raw data to benchmarks/results/ (profile.raw: collapsed stacks for flamegraph.pl or speedscope;
profile.pstats; the last run's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import uvloop

from benchmarks import procs
from benchmarks.load import LoadResult
from benchmarks.phases import Target, load, sanity_check
from benchmarks.profile_report import Profile, cprofile_rows, markdown, merge
from benchmarks.run import PROVIDER_KEY, cycles, service, upstream_argv

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
Spy = Callable[[int], list[str]]
"""py-spy's command line, given the pid to sample."""


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return found


def parse_raw(text: str) -> Counter[tuple[str, ...]]:
    """py-spy's raw (collapsed) output: `frame;frame;... count` per line, root first."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def spy_argv(pid: int, seconds: float, rate: int, raw: Path) -> list[str]:
    return [
        *("taskset", "-c", str(procs.LOAD_CORE), py_spy(), "record", "--pid", str(pid)),
        *("--rate", str(rate), "--duration", str(int(seconds)), "--format", "raw"),
        *("--nolineno", "--full-filenames", "--nonblocking", "--output", str(raw)),
    ]


async def measured(
    redis_url: str, upstream: str, out: Path, seconds: float, spy: Spy | None, concurrency: int
) -> tuple[LoadResult, float, float]:
    """One proxy process through the hooks: warm up, then `seconds` of load at `concurrency`
    between SIGUSR1 and SIGUSR2 (with py-spy running when `spy` is given).
    (load, proxy CPU seconds, seconds it waited for its core)."""
    via = ("benchmarks.hooks", str(out), *(["--cprofile"] if spy is None else []), "--")
    argv = cycles(upstream, redis_url, via=via)
    env = {"OPENAI_API_KEY": PROVIDER_KEY}
    async with service(out.stem, procs.PROXY_CORE, argv, RESULTS / "logs", env) as (proxy, url):
        target = Target("cycles-redis", url, [proxy.pid])
        await sanity_check(target)
        await load(target, "mixed", 64, count=3000)
        sampler = None
        if spy is not None:
            sampler = subprocess.Popen(spy(proxy.pid), stderr=subprocess.PIPE)  # noqa: ASYNC220
            await asyncio.sleep(0.5)
        os.kill(proxy.pid, signal.SIGUSR1)
        before = procs.cpu_seconds(target.pids), procs.wait_seconds(target.pids)
        result = await load(target, "mixed", concurrency, seconds=seconds)
        cpu = procs.cpu_seconds(target.pids) - before[0]
        waited = procs.wait_seconds(target.pids) - before[1]
        os.kill(proxy.pid, signal.SIGUSR2)
        if sampler is not None:
            _, errors = sampler.communicate(timeout=60)
            if sampler.returncode != 0:
                raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace')}")
        await asyncio.sleep(1.0)  # the proxy writes its figures on SIGUSR2
    return result, cpu, waited


async def profile(seconds: float, rate: int, concurrency: int) -> Profile:
    procs.pin_self()
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / "profile.raw"
    redis_service, redis_url = procs.start_redis(RESULTS / "logs")
    try:
        async with service("upstream", procs.LOAD_CORE, upstream_argv, RESULTS / "logs") as (
            _,
            upstream,
        ):

            def spy(pid: int) -> list[str]:
                return spy_argv(pid, seconds, rate, raw)

            sampled, cpu, waited = await measured(
                redis_url, upstream, RESULTS / "sampled", seconds, spy, concurrency
            )
            counted, _, _ = await measured(
                redis_url, upstream, RESULTS / "profile", seconds / 2, None, concurrency
            )
    finally:
        redis_service.stop()
    return Profile(
        stacks=parse_raw(raw.read_text()),
        rate=rate,
        seconds=seconds,
        requests=sampled.requests,
        cpu_seconds=cpu,
        wait_seconds=waited,
        gc=json.loads((RESULTS / "sampled.gc.json").read_text()),
        cprofile=cprofile_rows(RESULTS / "profile.pstats", counted.requests),
        cprofile_requests=counted.requests,
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="sampling time (20)")
    parser.add_argument("--rate", type=int, default=250, help="samples per second (250)")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="clients sending calls meanwhile (64)"
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "profile.md", help="its section for this concurrency"
    )
    args = parser.parse_args()
    uvloop.install()
    found = asyncio.run(profile(args.seconds, args.rate, args.concurrency))
    command = f"python -m benchmarks.profile --concurrency {args.concurrency}"
    section = markdown(found, command, args.concurrency)
    existing = args.out.read_text() if args.out.exists() else ""
    args.out.write_text(merge(existing, section, args.concurrency))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
