"""python -m benchmarks.versus OLD NEW [--rounds N]: two versions of cycles-proxy side by side.

OLD and NEW are source trees of the project (e.g. `git worktree add /tmp/old <commit>`). Both
serve at once, pinned to the proxy core, on one Redis and one fake provider, each on Redis and on
`memory://`; the load alternates between the four in short rounds (1.5 s each, the order reversed
every other round), so whatever else the machine does falls on both versions alike. Prints the
median proxy CPU per call of each version, per store, mode and concurrency, with the range over
the rounds. On a shared VM one run of `python -m benchmarks --quick` varies by ±15-30 % from the
next; this comparison is what a claim of "no slower" rests on.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from contextlib import AsyncExitStack
from pathlib import Path

import uvloop

from benchmarks import procs
from benchmarks.phases import Target, load, sanity_check
from benchmarks.run import PROVIDER_KEY, Argv, cycles, service, upstream_argv

HERE = Path(__file__).resolve().parent
LOGS = HERE / "results" / "versus-logs"
STORES = ("redis", "memory")


async def start(
    stack: AsyncExitStack, trees: dict[str, Path], upstream: str, redis_url: str
) -> dict[tuple[str, str], Target]:
    targets = {}
    for version, tree in trees.items():
        for store in STORES:
            # PYTHONSAFEPATH: `python -m proxy` would otherwise import the proxy of its working
            # directory (this checkout), ahead of PYTHONPATH, for both versions.
            env = {"OPENAI_API_KEY": PROVIDER_KEY, "PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1"}
            argv = cycles(upstream, redis_url if store == "redis" else "memory://")
            targets[(version, store)] = await warmed(stack, f"{version}-{store}", argv, env)
    return targets


async def warmed(stack: AsyncExitStack, name: str, argv: Argv, env: dict[str, str]) -> Target:
    """`cycles-proxy serve` started on the proxy core, checked, and warmed up."""
    proxy, url = await stack.enter_async_context(service(name, procs.PROXY_CORE, argv, LOGS, env))
    target = Target(name, url, [proxy.pid])
    await sanity_check(target)
    await load(target, "json", 64, count=1500)
    await load(target, "stream", 64, count=1000)
    return target


async def rounds(
    target_list: list[tuple[str, str]],
    targets: dict[tuple[str, str], Target],
    mode: str,
    concurrency: int,
    count: int,
) -> dict[tuple[str, str], list[float]]:
    per: dict[tuple[str, str], list[float]] = {key: [] for key in target_list}
    for n in range(count):
        for key in target_list if n % 2 == 0 else list(reversed(target_list)):
            target = targets[key]
            before = procs.cpu_seconds(target.pids)
            result = await load(target, mode, concurrency, seconds=1.5)  # type: ignore[arg-type]
            per[key].append((procs.cpu_seconds(target.pids) - before) / result.requests * 1e6)
    return per


async def versus(old: Path, new: Path, count: int) -> None:
    procs.pin_self()
    LOGS.mkdir(parents=True, exist_ok=True)
    redis_service, redis_url = procs.start_redis(LOGS)
    try:
        async with AsyncExitStack() as stack:
            _, upstream = await stack.enter_async_context(
                service("upstream", procs.LOAD_CORE, upstream_argv, LOGS)
            )
            targets = await start(stack, {"old": old, "new": new}, upstream, redis_url)
            print("| store | mode | c | old µs | new µs | change | old range | new range |")
            print("|---|---|--:|--:|--:|--:|---|---|")
            for mode in ("json", "stream"):
                for concurrency in (16, 64):
                    per = await rounds(list(targets), targets, mode, concurrency, count)
                    for store in STORES:
                        a, b = per[("old", store)], per[("new", store)]
                        o, n = statistics.median(a), statistics.median(b)
                        print(
                            f"| {store} | {mode} | {concurrency} | {o:.0f} | {n:.0f} | "
                            f"{100 * (n - o) / o:+.1f} % | {min(a):.0f}-{max(a):.0f} | "
                            f"{min(b):.0f}-{max(b):.0f} |",
                            flush=True,
                        )
    finally:
        redis_service.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.versus", description=__doc__)
    parser.add_argument("old", type=Path, help="the source tree of the version to compare with")
    parser.add_argument("new", type=Path, help="the source tree of the version under test")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per figure (8)")
    args = parser.parse_args()
    uvloop.install()
    asyncio.run(versus(args.old.resolve(), args.new.resolve(), args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
