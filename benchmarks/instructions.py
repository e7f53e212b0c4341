"""python -m benchmarks.instructions: instructions per call, passthrough and cycles-proxy, counted
by callgrind, so the figure does not move with whatever else the machine is doing.

The fake provider and Redis run natively; the passthrough and `cycles-proxy serve` (Redis, and
with --memory also memory://, benchmarks/policy.yaml) each run under
`nice -n 19 valgrind --tool=callgrind --instr-atstart=no`: uninstrumented (and so ~5x faster)
through start-up and warm-up, then instrumented for the measured windows only. Per target, mode
(JSON, stream of 20 chunks) and concurrency (1, 16): counters zeroed, N calls, dumped; zeroed,
2N calls, dumped. First, an idle window (30 s, no calls) measures what the process does on its
own: the proxy's periodic tasks cost ~0.8 M instructions a second, whatever the calls. Under
callgrind a call takes 50-300 ms of wall time (more when the machine is busy), so that would
add 2-9 % to a call, varying with the machine's load; it is subtracted: instructions per call =
(I(2N) - idle rate x the window's seconds) / 2N. The N window checks the estimate:
`window_cost` (2 I(N) - I(2N), both less idle) is what a window costs besides its calls (the
load's new connections, the dump). The JSON keeps the raw I(2N) / 2N and the difference
estimate (I(2N) - I(N)) / N, which cancels the window cost but doubles the noise.

Counts cover the whole process (every thread, the interpreter, uvloop, the C parsers, libc),
user space only: the kernel's work for a system call is not in them. PYTHONHASHSEED is fixed,
so dict layouts repeat from run to run. At concurrency 16 the process under valgrind is ~50x
slower than natively while the load is not, so more calls overlap per loop iteration than in
the native run: batching is at its most favourable there; c=1 is the exact per-call work.

Writes benchmarks/results/instructions.json and, with --write, the table in
benchmarks/instructions.md (the section between its markers). The last 2N window's callgrind
dumps are kept (benchmarks/results/callgrind/) for callgrind_annotate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import uvloop

from benchmarks import procs
from benchmarks.load import Mode
from benchmarks.phases import MODES, Target, load, sanity_check
from benchmarks.run import PROVIDER_KEY, Argv, cycles, service, upstream_argv

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DUMPS = RESULTS / "callgrind"
MARKDOWN = HERE / "instructions.md"
BEGIN, END = "<!-- instructions:begin -->", "<!-- instructions:end -->"
CASES: tuple[tuple[Mode, int], ...] = (("json", 1), ("stream", 1), ("json", 16), ("stream", 16))
IDLE_SECONDS = 30.0
"""The idle window: the proxy's periodic tasks (sweeper, policy watcher, usage sender, spill)
run every few seconds."""
START_SECONDS = 600.0
"""Under valgrind, importing the proxy takes a minute or more on a busy machine."""


def valgrind(name: str, argv: Argv) -> Argv:
    """`argv` under callgrind at the lowest priority, instrumentation off until asked."""
    out = DUMPS / f"{name}.%p"
    prefix = ["nice", "-n", "19", "valgrind", "--tool=callgrind", "--instr-atstart=no"]
    prefix += [f"--callgrind-out-file={out}", "--dump-instr=no", "--separate-threads=no"]
    return lambda port: [*prefix, *argv(port)]


class Counter:
    """callgrind_control on one process: zero, dump, and the dump's total instructions."""

    def __init__(self, name: str, pid: int) -> None:
        self.name, self.pid, self.dumps = name, pid, 0

    def control(self, *args: str) -> None:
        subprocess.run(
            ["callgrind_control", *args, str(self.pid)],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def zero(self) -> None:
        self.control("-z")

    def dump(self) -> tuple[int, Path]:
        self.control("-d")
        self.dumps += 1
        path = DUMPS / f"{self.name}.{self.pid}.{self.dumps}"
        for _ in range(600):
            if path.exists() and "\ntotals:" in path.read_text(errors="replace")[-4096:]:
                break
            time.sleep(0.1)
        for line in reversed(path.read_text(errors="replace").splitlines()):
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1]), path
        raise RuntimeError(f"{path}: no totals line")


async def window(
    target: Target, counter: Counter, mode: Mode, concurrency: int, calls: int
) -> tuple[int, float, Path]:
    """Instructions for `calls` calls, and the seconds from zeroing to dumping."""
    started = time.monotonic()
    counter.zero()
    result = await load(target, mode, concurrency, count=calls)
    if result.errors or result.requests != calls:
        raise RuntimeError(f"{target.name} {mode}: {result.errors} errors ({result.first_error})")
    total, path = counter.dump()
    return total, time.monotonic() - started, path


async def idle_rate(counter: Counter) -> float:
    """Instructions per second with no call in flight: the process's periodic tasks."""
    started = time.monotonic()
    counter.zero()
    await asyncio.sleep(IDLE_SECONDS)
    idle, _ = counter.dump()
    return idle / (time.monotonic() - started)


async def measure(target: Target, counter: Counter, calls: int) -> dict[str, Any]:
    """Every case's instructions per call, and the idle rate, for one warmed-up target."""
    idle = await idle_rate(counter)
    figures: dict[str, Any] = {"idle_per_second": round(idle)}
    for mode, concurrency in CASES:
        one, seconds_one, _ = await window(target, counter, mode, concurrency, calls)
        two, seconds, path = await window(target, counter, mode, concurrency, 2 * calls)
        shutil.copy(path, DUMPS / f"{target.name}-{mode}-c{concurrency}.callgrind")
        per_call = (two - idle * seconds) / (2 * calls)
        figures[f"{mode} c={concurrency}"] = {
            "per_call": round(per_call),
            "raw": round(two / (2 * calls)),
            "difference": round((two - one) / calls),
            "window_cost": round(2 * (one - idle * seconds_one) - (two - idle * seconds)),
            "window_n": one,
            "window_2n": two,
            "seconds_n": round(seconds_one, 1),
            "seconds_2n": round(seconds, 1),
        }
        print(
            f"  {target.name} {mode} c={concurrency}: {per_call:,.0f} instructions per call "
            f"({two / (2 * calls):,.0f} before the idle rate's {idle * seconds / (2 * calls):,.0f}"
            f"; {seconds:.0f} s for {2 * calls})",
            flush=True,
        )
    return figures


async def run_target(
    stack: AsyncExitStack, name: str, argv: Argv, calls: int, warmup: int
) -> dict[str, Any]:
    env = {"OPENAI_API_KEY": PROVIDER_KEY, "PYTHONHASHSEED": "0"}
    started, url = await stack.enter_async_context(
        service(
            name,
            procs.PROXY_CORE,
            valgrind(name, argv),
            RESULTS / "logs",
            env,
            within=START_SECONDS,
        )
    )
    target = Target(name, url, [started.pid])
    await sanity_check(target)
    for mode in MODES:
        await load(target, mode, 16, count=warmup)
    counter = Counter(name, started.pid)
    counter.control("-i", "on")
    for mode in MODES:  # callgrind translates the code once: not in the figures
        await load(target, mode, 1, count=20)
    return await measure(target, counter, calls)


async def instructions(
    calls: int, warmup: int, stores: list[str], floor_too: bool = True
) -> dict[str, Any]:
    procs.pin_self()
    DUMPS.mkdir(parents=True, exist_ok=True)
    for old in DUMPS.iterdir():
        old.unlink()
    redis_service, redis_url = procs.start_redis(RESULTS / "logs")
    results: dict[str, Any] = {
        "meta": {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "calls": calls, "warmup": warmup}
    }
    try:
        async with AsyncExitStack() as stack:
            _, upstream = await stack.enter_async_context(
                service("upstream", procs.LOAD_CORE, upstream_argv, RESULTS / "logs")
            )

            def floor(port: int) -> list[str]:
                return procs.python(
                    "benchmarks.passthrough", "--port", str(port), "--upstream", upstream
                )

            chosen: dict[str, Argv] = {"passthrough": floor} if floor_too else {}
            for store in stores:
                chosen[f"cycles-{store}"] = cycles(
                    upstream, redis_url if store == "redis" else "memory://"
                )
            for name, argv in chosen.items():
                async with AsyncExitStack() as one:  # one under valgrind at a time
                    results[name] = await run_target(one, name, argv, calls, warmup)
    finally:
        redis_service.stop()
    return results


def table(results: dict[str, Any]) -> str:
    """Markdown: instructions per call per target and case, and each proxy ÷ the passthrough."""
    names = [n for n in results if n != "meta"]
    head = (
        "| case | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"{n} ÷ passthrough" for n in names[1:])
        + " |"
    )
    rule = "|---|" + "--:|" * (2 * len(names) - 1)
    rows = [head, rule]
    for mode, concurrency in CASES:
        case = f"{mode} c={concurrency}"
        cells = [f"{results[n][case]['per_call']:,}" for n in names]
        floor = results["passthrough"][case]["per_call"]
        ratios = [f"{results[n][case]['per_call'] / floor:.2f}×" for n in names[1:]]
        rows.append(f"| {case} | " + " | ".join(cells + ratios) + " |")
    idle = " · ".join(f"{n} {results[n]['idle_per_second']:,}/s" for n in names)
    return "\n".join(rows) + f"\n\nIdle (timers, no calls): {idle}.\n"


def write_markdown(text: str) -> None:
    current = MARKDOWN.read_text()
    start, stop = current.index(BEGIN) + len(BEGIN), current.index(END)
    MARKDOWN.write_text(current[:start] + "\n" + text + current[stop:])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    parser.add_argument("--calls", type=int, default=100, help="N: windows of N and 2N calls")
    parser.add_argument("--warmup", type=int, default=300, help="calls per mode before (300)")
    parser.add_argument("--memory", action="store_true", help="also cycles-proxy on memory://")
    parser.add_argument(
        "--proxy-only",
        action="store_true",
        help="leave the passthrough out (to compare two versions of the proxy)",
    )
    parser.add_argument("--write", action="store_true", help="update benchmarks/instructions.md")
    args = parser.parse_args()
    uvloop.install()
    stores = ["redis", "memory"] if args.memory else ["redis"]
    results = asyncio.run(instructions(args.calls, args.warmup, stores, not args.proxy_only))
    (RESULTS / "instructions.json").write_text(json.dumps(results, indent=1))
    if args.proxy_only:
        return 0
    text = table(results)
    print(text)
    if args.write:
        write_markdown(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
