"""`cycles-proxy serve`: load and check everything, then run the server (one or N processes)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import partial
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import NamedTuple

from aiohttp import web

from proxy.admin.app import build_admin_app
from proxy.app import AppConfig, StoreConfig, build_app, build_metrics_app, shared
from proxy.budget import end_users
from proxy.cli.ports import (
    ADMIN_FLAG,
    METRICS_FLAG,
    PROXY_FLAG,
    in_use,
    is_in_use,
    pinned,
)
from proxy.core import encodings, peers
from proxy.core.errors import CyclesError
from proxy.gateway import listen, logs
from proxy.gateway.scrape import tokens_from_env
from proxy.policy import load_policy
from proxy.policy.advice import warnings
from proxy.policy.loader import with_upstream_override
from proxy.policy.runtime import Policy
from proxy.policy.watcher import Reload
from proxy.settings import Settings, parse_listen, store_from, validate

log = logging.getLogger(__name__)


def settings_from(args: argparse.Namespace) -> Settings:
    host, port = parse_listen(args.listen)
    return Settings(
        policy=args.policy,
        host=host,
        port=port,
        store=store_from(args.store),
        upstream=args.upstream,
        log_level=args.log_level,
        log_format=args.log_format,
        workers=args.workers,
        allow_header_identity_on_public_address=args.allow_header_identity_on_public_address,
        metrics_tokens=tokens_from_env(),
        allow_unauthenticated_metrics=args.allow_unauthenticated_metrics,
        admin=_listener(args.admin_listen, "--admin-listen"),
        metrics=_listener(args.metrics_listen, "--metrics-listen"),
        max_connections=args.max_connections,
        max_connections_per_peer=args.max_connections_per_peer,
        keep_alive=args.keep_alive_timeout,
        reload_every=args.reload_every,
        drain_timeout=args.drain_timeout,
        require_noeviction=args.require_noeviction,
        sigterm=args.sigterm,
    )


def _listener(value: str | None, flag: str) -> tuple[str, int] | None:
    return None if value is None or value == "off" else parse_listen(value, flag)


def serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    logs.setup_logging(settings.log_level, settings.log_format)
    policy = with_upstream_override(load_policy(settings.policy), settings.upstream)
    validate(settings, policy)
    end_users.from_environment(policy, os.environ)  # its secret, before anything listens
    for text in warnings(policy):
        log.warning("%s", text)
    # Loaded before any fork, so workers share the encoding tables' pages.
    encodings.preload(policy.used_encodings)
    _tune_gc()
    if settings.workers == 1:
        _run(settings, policy)
        return 0
    with pinned(settings) as shared:
        return _fork(shared, policy)


def _fork(settings: Settings, policy: Policy) -> int:
    """Run `settings.workers` workers, passing them SIGTERM and SIGINT, until all have ended."""
    ctx = multiprocessing.get_context("fork")
    workers = [
        ctx.Process(target=_worker, args=(settings, policy), name=f"worker-{i}")
        for i in range(settings.workers)
    ]
    for worker in workers:
        worker.start()
    _forward_signals(workers)
    for worker in workers:
        worker.join()
    return max((worker.exitcode or 0) for worker in workers)


GC_THRESHOLDS = (20_000, 20, 20)
"""A call allocates a few hundred short-lived objects, almost all freed by reference counting.
With the default (700, 10, 10) the cyclic collector ran a full collection every ~1,400 calls
(~25 ms each, about 7 % of the CPU; benchmarks/profile.md); cycles are rare here, so collect
less often."""


def _tune_gc() -> None:
    """Freeze what is loaded at start (policy, encodings, modules): the collector never scans
    it again, and forked workers keep sharing its pages instead of touching them."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _run(settings: Settings, policy: Policy) -> None:
    _install_uvloop()
    try:
        asyncio.run(_serve(settings, policy))
    finally:
        # Log lines are written once per loop iteration; a forked worker ends in os._exit,
        # without logging's flush at exit, so whatever is still buffered is written here.
        logs.flush()


def _worker(settings: Settings, policy: Policy) -> None:
    """One of `--workers` processes: a refusal is its one line and exit status 2, as in the
    parent (`cycles-proxy: …`), not a traceback."""
    try:
        _run(settings, policy)
    except CyclesError as exc:
        print(f"cycles-proxy: {exc}", file=sys.stderr)
        sys.exit(2)


class Listener(NamedTuple):
    """One listener: its app (built when its turn to start comes), the address it listens on,
    how long a closed connection may linger, and the flag that sets its address."""

    build: Callable[[], web.Application]
    address: tuple[str, int]
    lingering: float
    flag: str


async def _serve(settings: Settings, policy: Policy) -> None:
    """The proxy listener and, on its own address, the admin listener; until SIGTERM/SIGINT."""
    listeners = _listeners(settings, policy)
    # Signals are handled before the port accepts: a SIGTERM that arrives as soon as the proxy
    # answers (a worker's parent forwarding it) is never the default, fatal one.
    loop = asyncio.get_running_loop()
    signals: asyncio.Queue[signal.Signals] = asyncio.Queue()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signals.put_nowait, signum)
    runners = await _start(listeners, settings, policy)
    _log_listening(runners, settings, policy)
    first = await signals.get()
    deadline = loop.time() + settings.drain_timeout
    if first == signal.SIGTERM and settings.serves_after_sigterm(policy):
        log.info(
            "SIGTERM: sidecar mode, still serving the app in this pod for up to %.0f s "
            "(POST /quitquitquit or SIGINT stops now)",
            settings.drain_timeout,
        )
        with suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await _until_sigint(signals)
    grace = max(0.0, deadline - loop.time())
    log.info("%s: no new connections; in-flight calls have %.0f s to finish", first.name, grace)
    await _shut_down(runners, grace)
    log.info("stopped: every call settled")


def _listeners(settings: Settings, policy: Policy) -> list[Listener]:
    """The proxy app, then the admin and metrics apps where the settings ask for them."""
    reload = None
    if settings.reload_every > 0:
        reload = Reload(settings.policy, settings.reload_every, settings.upstream)
    stores = StoreConfig(settings.store, require_noeviction=settings.require_noeviction)
    # Only a sidecar's app may say it has exited; a gateway has no app beside it.
    on_quit = partial(_quit, settings.workers) if policy.identity == "header" else None
    app = build_app(AppConfig(policy, stores, reload=reload, on_quit=on_quit))
    address = (settings.host, settings.port)
    listeners = [Listener(lambda: app, address, listen.LINGER_S, PROXY_FLAG)]
    if settings.admin is not None:
        # Built once the proxy app has started: it is handed what the proxy app opened.
        admin = partial(_admin_app, app)
        listeners.append(Listener(admin, settings.admin, listen.ADMIN_LINGER_S, ADMIN_FLAG))
    if settings.metrics is not None:
        metrics = build_metrics_app(app, settings.metrics_tokens)
        listeners.append(Listener(lambda: metrics, settings.metrics, listen.LINGER_S, METRICS_FLAG))
    return listeners


def _admin_app(proxy: web.Application) -> web.Application:
    return build_admin_app(shared(proxy))


async def _start(
    listeners: list[Listener], settings: Settings, policy: Policy
) -> list[web.AppRunner]:
    """Each listener's runner, set up and accepting. When one cannot listen (its port is
    taken), those started are stopped and it is raised: one line, exit 2 (cli/ports.py)."""
    runners: list[web.AppRunner] = []
    try:
        for listener in listeners:
            runners.append(await _listening(listener, settings, policy))
    except BaseException:
        await _shut_down(runners, 0)
        raise
    return runners


async def _listening(listener: Listener, settings: Settings, policy: Policy) -> web.AppRunner:
    """The listener's runner, set up, and its site accepting. When it cannot be, the runner is
    cleaned up: what its app's startup had opened (the stores, when a later resource fails)
    is closed, and its site stopped."""
    # Request headers within read_request (read at start), and a bound on connections.
    runner = listen.runner(listener.build(), policy.timeouts.read_request, listener.lingering)
    try:
        await runner.setup()
        await _site(runner, listener, settings, policy).start()
    except BaseException as exc:
        await runner.cleanup()
        if isinstance(exc, OSError) and is_in_use(exc):
            raise in_use(*listener.address, listener.flag) from None
        raise
    return runner


def _site(
    runner: web.AppRunner, listener: Listener, settings: Settings, policy: Policy
) -> listen.BoundedSite:
    """The listener's site, holding at most the settings' connections (gateway/listen.py)."""
    return listen.BoundedSite(
        runner,
        *listener.address,
        max_connections=settings.max_connections,
        max_per_peer=settings.max_connections_per_peer,
        keep_alive=settings.keep_alive,
        # Who a connection is counted under: the policy at start (as read_request).
        peer_key=peers.connection_key(
            policy.trusted_proxies, policy.client_ipv6_prefix, gateway=policy.identity == "api_key"
        ),
        reuse_port=settings.workers > 1,
    )


def _log_listening(runners: list[web.AppRunner], settings: Settings, policy: Policy) -> None:
    """The startup line."""
    bound = iter(_bound(runner) for runner in runners)
    # The addresses bound, not the ones asked for: port 0 asks for any free port, and this line
    # is where a supervisor (or a test) learns which.
    log.info(
        "cycles-proxy listening on %s, admin on %s, metrics on %s (store %s, identity %s, mode %s)",
        next(bound),
        "off" if settings.admin is None else next(bound),
        "off" if settings.metrics is None else next(bound),
        settings.store.split("@")[-1],
        policy.identity,
        policy.mode,
    )


def _bound(runner: web.AppRunner) -> str:
    """HOST:PORT of the runner's listening socket."""
    host, port = runner.addresses[0][:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _quit(workers: int) -> None:
    """POST /quitquitquit: stop as SIGINT does. A worker asks the parent, which passes it on to
    every worker (the request reached only one of them)."""
    os.kill(os.getppid() if workers > 1 else os.getpid(), signal.SIGINT)


async def _until_sigint(signals: asyncio.Queue[signal.Signals]) -> None:
    while await signals.get() != signal.SIGINT:
        pass


async def _shut_down(runners: list[web.AppRunner], grace: float) -> None:
    """Close the listeners and idle connections, give requests in flight `grace` seconds, then
    run the apps' cleanup (which waits for their settlements)."""
    for runner in runners:
        for site in list(runner.sites):
            await site.stop()
    servers = [runner.server for runner in runners if runner.server is not None]
    for server in servers:
        server.pre_shutdown()
    await asyncio.gather(*(server.shutdown(grace) for server in servers))
    for runner in reversed(runners):
        await runner.cleanup()


def _forward_signals(workers: Sequence[BaseProcess]) -> None:
    """The parent passes SIGTERM and SIGINT on to every worker, which each drain on their own."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)


def _install_uvloop() -> None:
    if sys.platform == "win32":
        return
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
