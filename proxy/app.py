"""Builds the aiohttp application: routes, error rendering, and the resources it owns."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import suppress

import aiohttp
import orjson
from aiohttp import web

from proxy.actions.routes import add_routes as add_action_routes
from proxy.budget.call import ENDPOINTS
from proxy.budget.directory import Directory
from proxy.core import tasks
from proxy.core.errors import (
    ClientError,
    LedgerEpochLost,
    LedgerError,
    NotFound,
    ServiceUnavailable,
    StoreUnsafe,
)
from proxy.gateway import alerts, handlers, observe, relay, scrape
from proxy.gateway.context import RUNTIME, Runtime
from proxy.gateway.metrics import Metrics
from proxy.metering.shapes import azure, messages
from proxy.policy.runtime import Policy
from proxy.policy.watcher import PolicyWatcher, Reload
from proxy.store.api_keys import Keys, KeyStore
from proxy.store.ledger.base import Ledger, Reservation, SettleResult
from proxy.store.open import Stores, open_store
from proxy.store.tenants import TenantRecord, TenantStore

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STORES = web.AppKey("stores", Stores)
"""Every store behind the store URL (the admin app reads its tenants and idempotency keys)."""
SWEEP_INTERVAL = 5.0
SETTLE_ON_STOP = 30.0
"""Seconds calls still in flight get to settle at shutdown, after the drain; then the proxy
gives up on them, charging each what it holds."""


def error_body(exc: ClientError) -> bytes:
    return orjson.dumps(
        {"error": {"message": exc.message, "type": exc.type, "code": exc.code, "param": exc.param}}
    )


def error_response(exc: ClientError, path: str = "") -> web.Response:
    """The error as JSON: OpenAI's shape, or Anthropic's on the Messages API's path."""
    endpoint = ENDPOINTS.get(path)
    anthropic = endpoint is not None and endpoint.name == "messages"
    response = web.Response(
        body=messages.error_body(exc) if anthropic else error_body(exc),
        status=exc.status,
        content_type="application/json",
        headers=exc.headers,
    )
    if exc.close_connection:
        response.force_close()
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as OpenAI-shaped JSON; nothing else (no stack trace) reaches a client."""
    try:
        relay.check_path(request.raw_path)
        return await handler(request)
    except ClientError as exc:
        return error_response(exc, request.path)
    except LedgerEpochLost as exc:
        # Not LedgerUnavailable: fail_mode open must not forward on a store that lost its data.
        lost = ServiceUnavailable(str(exc), retry_after=30, code="ledger_epoch_lost")
        return error_response(lost, request.path)
    except web.HTTPException as exc:
        if exc.status in (404, 405):
            return error_response(
                NotFound(f"No such route: {request.method} {request.path}.", code="no_route"),
                request.path,
            )
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        failure = ClientError("The proxy failed to handle this request; it has been logged.")
        failure.status, failure.type = 500, "server_error"
        return error_response(failure, request.path)


def api_keys(policy: Policy) -> dict[str, str | None]:
    """Provider keys from the environment, by upstream name."""
    keys: dict[str, str | None] = {}
    for upstream in policy.upstreams.values():
        keys[upstream.name] = os.environ.get(upstream.api_key_env) if upstream.api_key_env else None
        if upstream.api_key_env and not keys[upstream.name]:
            log.warning(
                "upstream %s: environment variable %s is not set; calls go up without a key",
                upstream.name,
                upstream.api_key_env,
            )
    return keys


def build_app(
    policy: Policy,
    store: str = "memory://",
    *,
    ledger: Ledger | None = None,
    keys: Mapping[str, str | None] | None = None,
    sweep_every: float | None = SWEEP_INTERVAL,
    key_store: KeyStore | None = None,
    reload: Reload | None = None,
    require_noeviction: bool = False,
    on_quit: Callable[[], None] | None = None,
) -> web.Application:
    """The proxy application. `ledger` and `key_store` override `store` (and are not closed with
    the app), `keys` the provider keys from the environment (the demo and tests pass their own);
    `sweep_every=None` runs no heartbeat or sweeper (a test that counts store commands).
    `reload` watches the policy's files and swaps in a change that checks clean;
    `require_noeviction` refuses a Redis store that may evict keys (store/redis/safety.py);
    `on_quit` serves `POST /quitquitquit` (loopback callers only): the app in the pod has
    exited, stop serving (cli/serve.py)."""
    largest = max([policy.limits.max_body_bytes, *policy.limits.route_body_bytes.values()])
    app = web.Application(middlewares=[observe.middleware, errors], client_max_size=largest)
    app[observe.METRICS] = Metrics()
    app.on_response_prepare.append(observe.on_prepare)
    app.cleanup_ctx.append(
        lambda app: _resources(
            app,
            policy,
            store,
            ledger,
            api_keys(policy) if keys is None else keys,
            sweep_every,
            key_store,
            reload=reload,
            explicit_keys=keys,
            require_noeviction=require_noeviction,
        )
    )
    for path in (*ENDPOINTS, *azure.ROUTES):
        app.router.add_post(path, handlers.budgeted)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", observe.readyz)
    if policy.identity == "header":
        # Metrics name tenants and their spend. A sidecar's port is loopback only, for the app
        # its pod trusts already; a gateway's is every tenant's, so there they are served only
        # on the admin listener or --metrics-listen (identity cannot change on a reload).
        app.router.add_get("/metrics", observe.metrics_endpoint)
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_get("/v1/models/{model}", handlers.models)
    if on_quit is not None:
        app.router.add_post("/quitquitquit", handlers.quitter(on_quit))
    add_action_routes(app.router)
    app.router.add_route("*", "/{tail:.*}", handlers.fallback)
    return app


def build_metrics_app(
    proxy: web.Application, tokens: tuple[str, ...] | None = None
) -> web.Application:
    """A listener with only /metrics (the proxy app's registry) and /healthz: for Prometheus,
    on an address callers cannot reach (a gateway), or when the proxy port itself is loopback
    only (a sidecar). With `tokens` (default: $CYCLES_METRICS_TOKEN), /metrics only for a bearer
    of one of them (gateway/scrape.py)."""
    tokens = scrape.tokens_from_env() if tokens is None else tokens
    app = web.Application(middlewares=[errors, *([scrape.middleware(tokens)] if tokens else [])])
    app[observe.METRICS] = proxy[observe.METRICS]
    app.router.add_get("/metrics", observe.metrics_endpoint)
    app.router.add_get("/healthz", handlers.healthz)
    return app


def _spill_alerts(app: web.Application) -> Callable[[Reservation, SettleResult], None]:
    """alerts.notifier for the runtime current when a spilled commit lands (policy reloads)."""
    return lambda reservation, result: alerts.notifier(app[RUNTIME])(reservation, result)


def _store_lost(app: web.Application, expected: str | None, found: str | None) -> None:
    """The ledger's epoch is lost: alert once, and never write the spill into that store."""
    rt = app[RUNTIME]
    rt.fail_open.spill.store_lost()
    alerts.epoch_lost(rt, expected, found)


async def _resources(
    app: web.Application,
    policy: Policy,
    store: str,
    ledger: Ledger | None,
    keys: Mapping[str, str | None],
    sweep_every: float | None,
    key_store: KeyStore | None,
    *,
    reload: Reload | None = None,
    explicit_keys: Mapping[str, str | None] | None = None,
    require_noeviction: bool = False,
) -> AsyncIterator[None]:
    stores = open_store(store, policy.reservations, ledger=ledger, api_keys=key_store)
    the_ledger, store_side = stores.ledger, stores.tenants
    try:
        await the_ledger.connect(require_noeviction=require_noeviction)
    except StoreUnsafe:
        await stores.close()
        raise
    app[STORES] = stores
    session = aiohttp.ClientSession(
        connector=relay.Connector(limit=0, ttl_dns_cache=300),
        auto_decompress=True,
    )
    app[RUNTIME] = Runtime(
        policy=policy,
        ledger=the_ledger,
        session=session,
        api_keys=keys,
        keys=Keys(stores.api_keys),
        directory=Directory(store_side, lambda: app[RUNTIME].policy),
        on_rejected=lambda tenant, reason: _note_rejection(store_side, tenant, reason),
        replays=stores.replays,
        metrics=app[observe.METRICS],
    )
    the_ledger.expiry_alerts = alerts.ExpiryNotifier(lambda: app[RUNTIME])
    unseeded = None if await _seed(store_side, policy) else policy
    background = []
    if sweep_every is not None:
        beat = _heartbeat_forever(the_ledger, sweep_every)
        background.append(tasks.spawn(beat, name="heartbeat"))
        sweeper = _sweep_forever(
            the_ledger, store_side, sweep_every, unseeded, app[observe.METRICS]
        )
        background.append(tasks.spawn(sweeper, name="sweeper"))
    # Unbudgeted calls' charges (fail_mode: open), written once the ledger is back
    # (gateway/spill.py).
    # Their commits announce the thresholds they cross. A lost epoch drops the spill instead.
    spill = app[RUNTIME].fail_open.spill
    on_commit = _spill_alerts(app)
    drain = spill.drain_forever(the_ledger, on_commit=on_commit)
    background.append(tasks.spawn(drain, name="spill"))
    the_ledger.on_epoch_lost(lambda expected, found: _store_lost(app, expected, found))
    if policy.identity == "api_key":
        # Other replicas' key changes evict this one's cache as they happen.
        background.append(tasks.spawn(app[RUNTIME].keys.watch(), name="key events"))
    if reload is not None:
        watcher = PolicyWatcher(
            reload, policy, lambda new: _reloaded(app[RUNTIME], store_side, new, explicit_keys)
        )
        background.append(tasks.spawn(watcher.run(), name="policy watcher"))
    yield
    for task in background:
        await tasks.stop(task)
    await _drain_settlements()
    if len(spill):
        with suppress(TimeoutError):
            await asyncio.wait_for(spill.drain(the_ledger, on_commit), 5)
    await session.close()
    await stores.close()


async def _reloaded(
    rt: Runtime, store: TenantStore, policy: Policy, explicit_keys: Mapping[str, str | None] | None
) -> None:
    """Swap in a reloaded policy (provider keys given to build_app still win) and seed the
    tenants it adds."""
    rt.swap_policy(policy, {**api_keys(policy), **(explicit_keys or {})})
    await _seed(store, policy)


async def _note_rejection(store: TenantStore, tenant: str | None, reason: str) -> None:
    """A call refused at identification goes into the audit of the tenant its key names."""
    if tenant is None:
        return
    try:
        await store.note_rejection(tenant, reason)
    except LedgerError as exc:
        log.warning("could not audit a rejected call for tenant=%s (%s)", tenant, exc)


async def _seed(store: TenantStore, policy: Policy) -> bool:
    """Create the policy's tenants the store does not have (the store's records win)."""
    seeds = [TenantRecord(seed.id, seed.plan, mode=seed.mode) for seed in policy.tenants.values()]
    try:
        created = await store.seed(seeds)
    except LedgerError as exc:
        log.warning("could not seed the policy's tenants into the store yet (%s)", exc)
        return False
    if created:
        log.info("seeded %d tenants from the policy into the store", created)
    return True


async def _heartbeat_forever(ledger: Ledger, every: float) -> None:
    """Tell other instances this one is alive, every `every` seconds, whatever the sweeper is
    doing: a task of its own, so no work of this instance can make it look dead."""
    while True:
        try:
            await ledger.heartbeat()
        except LedgerError as exc:
            log.warning("heartbeat: ledger unavailable (%s)", exc)
        await asyncio.sleep(every)


async def _sweep_forever(
    ledger: Ledger,
    tenants: TenantStore,
    every: float,
    unseeded: Policy | None,
    metrics: Metrics | None = None,
) -> None:
    """Resolve overdue reservations (ours past the cap, dead instances' at once), one pass
    every `every` seconds; seed the policy's tenants if the store was unreachable at start."""
    while True:
        if unseeded is not None and await _seed(tenants, unseeded):
            unseeded = None
        errors = ledger.sweep_errors
        try:
            resolved = await observe.ledger_op(metrics, "sweep", ledger.sweep_all())
            if metrics is not None:
                metrics.sweeper_reclaims.inc(resolved)
            if resolved:
                log.info("sweeper resolved %d overdue reservations", resolved)
        except LedgerError as exc:
            log.warning("sweeper: ledger unavailable (%s)", exc)
        if metrics is not None:
            metrics.sweeper_tenant_errors.inc(ledger.sweep_errors - errors)
        await asyncio.sleep(every)


async def _drain_settlements(give_up: float = 5.0) -> None:
    """Let in-flight calls settle before the ledger closes. Calls still waiting for their
    provider after SETTLE_ON_STOP are given up: cancelled, which charges each what it holds
    (its request may have reached the provider), within `give_up` more seconds."""
    pending = [t for t in tasks.running() if t.get_name().startswith("call ")]
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=SETTLE_ON_STOP)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=give_up)
