"""python -m benchmarks.otel [--rounds N]: what OpenTelemetry costs, the proxy with it off and on.

One source tree served twice per store (Redis and `memory://`), on one Redis and one fake
provider: once as it runs by default (no OTEL_* variables: nothing of OpenTelemetry loaded), once
exporting every call's spans and the GenAI metrics over OTLP/HTTP to a local sink that reads and
discards them (the SDK's default batching: spans every 5 s or each 512, metrics every 60 s).
The load alternates between the four in short rounds, as `benchmarks.versus` does; prints the
median proxy CPU per call (the exporter's thread included) off and on, per store, mode and
concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from contextlib import AsyncExitStack

import uvloop
from aiohttp import web

from benchmarks import procs
from benchmarks.phases import Target
from benchmarks.run import PROVIDER_KEY, cycles, service, upstream_argv
from benchmarks.versus import LOGS, STORES, rounds, warmed

VARIANTS = ("off", "on")


async def start(
    stack: AsyncExitStack, upstream: str, redis_url: str, sink: str
) -> dict[tuple[str, str], Target]:
    targets = {}
    for variant in VARIANTS:
        for store in STORES:
            env = {"OPENAI_API_KEY": PROVIDER_KEY}
            if variant == "on":
                env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": sink, "OTEL_SERVICE_NAME": "bench"}
            argv = cycles(upstream, redis_url if store == "redis" else "memory://")
            targets[(variant, store)] = await warmed(stack, f"otel-{variant}-{store}", argv, env)
    return targets


async def compare(count: int) -> None:
    procs.pin_self()
    LOGS.mkdir(parents=True, exist_ok=True)
    redis_service, redis_url = procs.start_redis(LOGS)
    try:
        async with AsyncExitStack() as stack:
            _, upstream = await stack.enter_async_context(
                service("upstream", procs.LOAD_CORE, upstream_argv, LOGS)
            )
            _, sink = await stack.enter_async_context(
                service("otel-sink", procs.LOAD_CORE, sink_argv, LOGS)
            )
            targets = await start(stack, upstream, redis_url, sink)
            print("| store | mode | c | off µs | on µs | change | off range | on range |")
            print("|---|---|--:|--:|--:|--:|---|---|")
            for mode in ("json", "stream"):
                for concurrency in (16, 64):
                    per = await rounds(list(targets), targets, mode, concurrency, count)
                    for store in STORES:
                        _row(store, mode, concurrency, per[("off", store)], per[("on", store)])
    finally:
        redis_service.stop()


def _row(store: str, mode: str, concurrency: int, off: list[float], on: list[float]) -> None:
    a, b = statistics.median(off), statistics.median(on)
    print(
        f"| {store} | {mode} | {concurrency} | {a:.0f} | {b:.0f} | {100 * (b - a) / a:+.1f} % | "
        f"{min(off):.0f}-{max(off):.0f} | {min(on):.0f}-{max(on):.0f} |",
        flush=True,
    )


def sink_argv(port: int) -> list[str]:
    return procs.python("benchmarks.otel", "--sink", str(port))


def sink(port: int) -> None:
    """An OTLP/HTTP receiver that reads every export and keeps nothing."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(content_type="application/x-protobuf")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/v1/{signal}", accept)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.otel", description=__doc__)
    parser.add_argument("--rounds", type=int, default=8, help="rounds per figure (8)")
    parser.add_argument("--sink", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    uvloop.install()
    if args.sink is not None:
        sink(args.sink)
        return 0
    asyncio.run(compare(args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
