"""`cycles-proxy serve`: load and check everything, then run the server (one or N processes)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import sys

from aiohttp import web

from proxy import encodings
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
    app = build_app(policy, settings.store)
    log.info(
        "cycles-proxy listening on %s:%d (store %s, identity %s, mode %s)",
        settings.host,
        settings.port,
        settings.store.split("@")[-1],
        policy.identity,
        policy.mode,
    )
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=settings.workers > 1,
        print=None,
        access_log=None,
    )


def _install_uvloop() -> None:
    if sys.platform == "win32":
        return
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
