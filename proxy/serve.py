"""`cycles-proxy serve`: load and check everything, then run the server (one or N processes)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import signal
import sys

from aiohttp import web

from proxy import encodings
from proxy.admin.app import build_admin_app
from proxy.app import build_app
from proxy.logs import setup_logging
from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.settings import (
    Settings,
    parse_listen,
    store_from,
    validate,
    with_upstream_override,
)

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
        workers=args.workers,
        allow_header_identity_on_public_address=args.allow_header_identity_on_public_address,
        admin=None if args.admin_listen == "off" else parse_listen(args.admin_listen),
    )


def serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    setup_logging(settings.log_level)
    policy = with_upstream_override(load_policy(settings.policy), settings.upstream)
    validate(settings, policy)
    # Loaded before any fork, so workers share the encoding tables' pages.
    encodings.preload(policy.used_encodings)
    if settings.workers == 1:
        _run(settings, policy)
        return 0
    ctx = multiprocessing.get_context("fork")
    workers = [
        ctx.Process(target=_run, args=(settings, policy), name=f"worker-{i}")
        for i in range(settings.workers)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return max((worker.exitcode or 0) for worker in workers)


def _run(settings: Settings, policy: Policy) -> None:
    _install_uvloop()
    asyncio.run(_serve(settings, policy))


async def _serve(settings: Settings, policy: Policy) -> None:
    """The proxy listener and, on its own address, the admin listener; until SIGTERM/SIGINT."""
    app = build_app(policy, settings.store)
    runners = [web.AppRunner(app, access_log=None)]
    if settings.admin is not None:
        runners.append(web.AppRunner(build_admin_app(app, settings.store), access_log=None))
    addresses = [(settings.host, settings.port), settings.admin]
    for runner, address in zip(runners, addresses, strict=False):
        assert address is not None
        await runner.setup()
        site = web.TCPSite(runner, address[0], address[1], reuse_port=settings.workers > 1)
        await site.start()
    log.info(
        "cycles-proxy listening on %s:%d, admin on %s (store %s, identity %s, mode %s)",
        settings.host,
        settings.port,
        "off" if settings.admin is None else f"{settings.admin[0]}:{settings.admin[1]}",
        settings.store.split("@")[-1],
        policy.identity,
        policy.mode,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for runner in reversed(runners):
        await runner.cleanup()


def _install_uvloop() -> None:
    if sys.platform == "win32":
        return
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
