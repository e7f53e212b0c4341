"""The composition root: the proxy application, built from an `AppConfig`.

Its resources are opened and closed in cleanup contexts, one per resource, each stored under a
typed `AppKey` (aiohttp's background_tasks example). aiohttp runs them in this order at start and
in reverse at stop:

    (tracing)        with OpenTelemetry on only (telemetry.py): its         TRACING
                     providers, flushed at stop after every call settled
    _stores          every store behind the store URL (store/open.py)     STORES, LEDGER, …
    _session         the upstream connection pool                              SESSION
    _runtime         the policy in force, its provider keys and end-user id     RUNTIME, SEEDER
                     secret, the tenants' cache; the policy's tenants seeded
    _alerts          alerts, subscribed to the pipeline's events               ALERTS
    _fail_open       local buckets and the spill, drained into the ledger      FAIL_OPEN
                     (and once more on the way out, after calls settled)
    _pipeline        admission and the pipeline, from the resources above      ADMISSION, PIPELINE
    _calls           at stop: calls in flight settle before anything closes
    _heartbeat, _sweeper, _key_events, _policy_watcher, _usage_sender: tasks, stopped first

`shared` hands the admin listener what it uses of these, explicitly.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial

import aiohttp
import orjson
from aiohttp import web

from proxy.actions.routes import add_routes as add_action_routes
from proxy.budget import end_users
from proxy.budget.directory import Directory
from proxy.budget.endpoints import ENDPOINTS
from proxy.core import tasks
from proxy.core.errors import ClientError, LedgerEpochLost, NotFound
from proxy.gateway import admission, handlers, metrics, observe, relay, scrape, telemetry, upkeep
from proxy.gateway.admission import ADMISSION, Admission
from proxy.gateway.alerts import ALERTS, Alerts, ExpiryNotifier
from proxy.gateway.context import (
    API_KEYS,
    FAIL_OPEN,
    LEDGER,
    MCP_SESSIONS,
    REPLAYS,
    RUNTIME,
    SESSION,
    Runtime,
)
from proxy.gateway.events import EVENTS, Events
from proxy.gateway.identity import Callers, note_rejection
from proxy.gateway.metrics import METRICS, Metrics
from proxy.gateway.pipeline import PIPELINE, Pipeline
from proxy.gateway.settle import Settler
from proxy.gateway.spill import FailOpen
from proxy.gateway.usage_sender import UsageSender
from proxy.metering.shapes import azure, messages
from proxy.policy.runtime import Policy
from proxy.policy.watcher import PolicyWatcher, Reload
from proxy.store.api_keys import Keys, KeyStore
from proxy.store.ledger.base import Ledger
from proxy.store.open import Stores, open_store

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SWEEP_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the stores are. `ledger` and `key_store`, when given (tests), are used as they are
    and not closed with the app."""

    url: str = "memory://"
    require_noeviction: bool = False
    """Refuse a Redis store that may evict keys (store/redis/safety.py)."""
    ledger: Ledger | None = None
    key_store: KeyStore | None = None


@dataclass(frozen=True, slots=True)
class AppConfig:
    """What the proxy application is built from (cli/serve.py, testing/local.py, tests)."""

    policy: Policy
    store: StoreConfig = field(default_factory=StoreConfig)
    provider_keys: Mapping[str, str | None] | None = None
    """Upstream name → key; None reads each upstream's `api_key_env` (the demo and tests pass
    their own, which win over the environment on a reload too)."""
    sweep_every: float | None = SWEEP_INTERVAL
    """Seconds between heartbeats and sweeps; None runs neither (a test that counts store
    commands)."""
    reload: Reload | None = None
    """Watch the policy's files and swap in a change that checks clean."""
    on_quit: Callable[[], None] | None = None
    """Serve `POST /quitquitquit` (loopback callers only): the app in the pod has exited, stop
    serving (cli/serve.py)."""


CONFIG = web.AppKey("config", AppConfig)
STORES = web.AppKey("stores", Stores)
"""Every store behind the store URL (the admin app reads its tenants and idempotency keys)."""
SEEDER = web.AppKey("seeder", upkeep.Seeder)
HEARTBEAT = web.AppKey("heartbeat", asyncio.Task[None])
SWEEPER = web.AppKey("sweeper", asyncio.Task[None])
KEY_EVENTS = web.AppKey("key_events", asyncio.Task[None])
WATCHER = web.AppKey("policy_watcher", asyncio.Task[None])
USAGE_SENDER = web.AppKey("usage_sender", asyncio.Task[None])


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
        return error_response(admission.lost(exc), request.path)
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


def provider_keys(policy: Policy) -> dict[str, str | None]:
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


def build_app(config: AppConfig) -> web.Application:
    """The proxy application: its routes, and its resources in cleanup contexts (module
    docstring). PolicyError, before anything is opened, for a policy that hashes end-user ids
    without their secret."""
    end_users.from_environment(config.policy, os.environ)
    limits = config.policy.limits
    largest = max([limits.max_body_bytes, *limits.route_body_bytes.values()])
    app = web.Application(middlewares=[observe.middleware, errors], client_max_size=largest)
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[EVENTS] = Events()
    # The call's log line and the metrics hear of every call; alerts subscribe once they exist.
    observe.subscribe(app[EVENTS])
    metrics.subscribe(app[METRICS], app[EVENTS])
    app.on_response_prepare.append(observe.on_prepare)
    telemetry.add_to(app)  # first: its providers stop (and flush) after calls settled
    app.cleanup_ctx.extend(_RESOURCES)
    _add_routes(app.router, config)
    return app


def _add_routes(router: web.UrlDispatcher, config: AppConfig) -> None:
    for path in (*ENDPOINTS, *azure.ROUTES):
        router.add_post(path, handlers.budgeted)
    router.add_get("/healthz", handlers.healthz)
    router.add_get("/readyz", observe.readyz)
    if config.policy.identity == "header":
        # Metrics name tenants and their spend. A sidecar's port is loopback only, for the app
        # its pod trusts already; a gateway's is every tenant's, so there they are served only
        # on the admin listener or --metrics-listen (identity cannot change on a reload).
        router.add_get("/metrics", metrics.metrics_endpoint)
    router.add_get("/v1/models", handlers.models)
    router.add_get("/v1/models/{model}", handlers.models)
    if config.on_quit is not None:
        router.add_post("/quitquitquit", handlers.quitter(config.on_quit))
    add_action_routes(router)
    router.add_route("*", "/{tail:.*}", handlers.fallback)


def build_metrics_app(
    proxy: web.Application, tokens: tuple[str, ...] | None = None
) -> web.Application:
    """A listener with only /metrics (the proxy app's registry) and /healthz: for Prometheus,
    on an address callers cannot reach (a gateway), or when the proxy port itself is loopback
    only (a sidecar). With `tokens` (default: $CYCLES_METRICS_TOKEN), /metrics only for a bearer
    of one of them (gateway/scrape.py)."""
    tokens = scrape.tokens_from_env() if tokens is None else tokens
    app = web.Application(middlewares=[errors, *([scrape.middleware(tokens)] if tokens else [])])
    app[METRICS] = proxy[METRICS]
    app.router.add_get("/metrics", metrics.metrics_endpoint)
    app.router.add_get("/healthz", handlers.healthz)
    return app


@dataclass(frozen=True, slots=True)
class Shared:
    """What the admin listener uses of the proxy app's resources, handed over explicitly once
    the proxy app has started (`shared`)."""

    stores: Stores
    """The tenants' records and audit, the ledger, the admin calls' idempotency keys."""
    keys: Keys
    runtime: Runtime
    """The policy in force, and the tenants' cache to forget a changed tenant in."""
    metrics: Metrics


def shared(proxy: web.Application) -> Shared:
    """What the proxy app shares with the admin listener; after its startup has run."""
    return Shared(proxy[STORES], proxy[API_KEYS], proxy[RUNTIME], proxy[METRICS])


# -- the resources, one cleanup context each (in build_app's order) ---------------------------


async def _stores(app: web.Application) -> AsyncIterator[None]:
    """Every store behind the store URL (store/open.py); closed however the start ends (a
    store unsafe to keep a ledger in, or one that refuses a command, is closed as it fails)."""
    given, policy = app[CONFIG].store, app[CONFIG].policy
    stores = open_store(
        given.url, policy.reservations, ledger=given.ledger, api_keys=given.key_store
    )
    try:
        users = end_users.from_environment(policy, os.environ)
        await stores.ledger.connect(
            require_noeviction=given.require_noeviction, user_ids=users.fingerprint()
        )
        app[STORES], app[LEDGER], app[REPLAYS] = stores, stores.ledger, stores.replays
        app[MCP_SESSIONS], app[API_KEYS] = stores.mcp_sessions, Keys(stores.api_keys)
        yield
    finally:
        await stores.close()


async def _session(app: web.Application) -> AsyncIterator[None]:
    connector = relay.Connector(limit=0, ttl_dns_cache=300)
    app[SESSION] = aiohttp.ClientSession(connector=connector, auto_decompress=True)
    yield
    await app[SESSION].close()


async def _runtime(app: web.Application) -> AsyncIterator[None]:
    """The policy in force and its provider keys, the tenants' cache on the store; the policy's
    tenants seeded into the store (again by the sweeper, if it cannot be reached yet)."""
    config, tenants = app[CONFIG], app[STORES].tenants
    keys = provider_keys(config.policy) if config.provider_keys is None else config.provider_keys
    users = end_users.from_environment(config.policy, os.environ)
    runtime = Runtime(config.policy, keys, Directory(tenants, lambda: runtime.policy), users)
    app[RUNTIME] = runtime
    app[SEEDER] = upkeep.Seeder(tenants, config.policy)
    await app[SEEDER].seed()
    yield


async def _alerts(app: web.Application) -> AsyncIterator[None]:
    """Alerts hear of denials and commits from the pipeline's events, and of expiries the
    sweeper charges."""
    app[ALERTS] = Alerts(app[RUNTIME], app[METRICS])
    app[ALERTS].subscribe(app[EVENTS])
    app[LEDGER].expiry_alerts = ExpiryNotifier(app[ALERTS])
    yield


async def _fail_open(app: web.Application) -> AsyncIterator[None]:
    """Unbudgeted calls' charges (fail_mode: open) wait in the spill, written once the ledger
    is back (gateway/spill.py); their commits announce the thresholds they cross. A lost epoch
    drops the spill instead."""
    fail_open = app[FAIL_OPEN] = FailOpen()
    spill, ledger, on_commit = fail_open.spill, app[LEDGER], app[ALERTS].on_commit
    ledger.on_epoch_lost(partial(_store_lost, app))
    drain = tasks.spawn(spill.drain_forever(ledger, on_commit=on_commit), name="spill")
    yield
    await tasks.stop(drain)
    if len(spill):  # calls settled meanwhile (_calls): their last charges
        with suppress(TimeoutError):
            await asyncio.wait_for(spill.drain(ledger, on_commit), 5)


def _store_lost(app: web.Application, expected: str | None, found: str | None) -> None:
    """The ledger's epoch is lost: alert once, and never write the spill into that store."""
    app[FAIL_OPEN].spill.store_lost()
    app[ALERTS].epoch_lost(expected, found)


async def _pipeline(app: web.Application) -> AsyncIterator[None]:
    """Admission and the pipeline, assembled from the resources above."""
    runtime, ledger, fail_open = app[RUNTIME], app[LEDGER], app[FAIL_OPEN]
    callers = Callers(app[API_KEYS], partial(note_rejection, app[STORES].tenants))
    app[ADMISSION] = Admission(runtime, ledger, callers, app[REPLAYS], fail_open, app[METRICS])
    settler = Settler(ledger, fail_open.spill, app[EVENTS], app[METRICS])
    app[PIPELINE] = Pipeline(runtime, app[ADMISSION], app[SESSION], fail_open, settler, app[EVENTS])
    yield


async def _calls(app: web.Application) -> AsyncIterator[None]:
    """At stop, calls still in flight settle before the spill's last drain and the ledger
    closes."""
    yield
    await upkeep.drain_settlements()


async def _heartbeat(app: web.Application) -> AsyncIterator[None]:
    every = app[CONFIG].sweep_every
    if every is not None:
        app[HEARTBEAT] = tasks.spawn(upkeep.heartbeat_forever(app[LEDGER], every), name="heartbeat")
    yield
    await _stop(app, HEARTBEAT)


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    every = app[CONFIG].sweep_every
    if every is not None:
        sweeping = upkeep.sweep_forever(app[LEDGER], every, app[SEEDER], app[METRICS])
        app[SWEEPER] = tasks.spawn(sweeping, name="sweeper")
    yield
    await _stop(app, SWEEPER)


async def _key_events(app: web.Application) -> AsyncIterator[None]:
    """Other replicas' key changes evict this one's cache as they happen (gateway mode)."""
    if app[CONFIG].policy.identity == "api_key":
        app[KEY_EVENTS] = tasks.spawn(app[API_KEYS].watch(), name="key events")
    yield
    await _stop(app, KEY_EVENTS)


async def _policy_watcher(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    if config.reload is not None:
        watcher = PolicyWatcher(config.reload, config.policy, partial(_reloaded, app))
        app[WATCHER] = tasks.spawn(watcher.run(), name="policy watcher")
    yield
    await _stop(app, WATCHER)


async def _usage_sender(app: web.Application) -> AsyncIterator[None]:
    """Usage events leave the store's outbox for the policy's sinks (gateway/usage_sender.py)."""
    sender = UsageSender(app[LEDGER], app[RUNTIME], app[METRICS], app[ALERTS])
    app[USAGE_SENDER] = tasks.spawn(sender.run(), name="usage events")
    yield
    await _stop(app, USAGE_SENDER)


_RESOURCES = (
    *(_stores, _session, _runtime, _alerts, _fail_open, _pipeline, _calls),
    *(_heartbeat, _sweeper, _key_events, _policy_watcher, _usage_sender),
)


async def _stop(app: web.Application, key: web.AppKey[asyncio.Task[None]]) -> None:
    if key in app:
        await tasks.stop(app[key])


async def _reloaded(app: web.Application, policy: Policy) -> None:
    """Swap in a reloaded policy (provider keys given in the config still win) and seed the
    tenants it adds. PolicyError (the watcher keeps the policy in force) when it hashes end-user
    ids and their secret is not set."""
    given = app[CONFIG].provider_keys or {}
    users = end_users.from_environment(policy, os.environ)
    end_users.check_reload(app[RUNTIME].users, users)
    app[RUNTIME].swap_policy(policy, {**provider_keys(policy), **given}, users)
    await upkeep.seed(app[STORES].tenants, policy)
