"""What the admin app uses of the proxy app's, per request: handed over explicitly once the
proxy app has started (app.Shared, stored under SHARED), never read from the proxy app itself."""

from __future__ import annotations

from aiohttp import web

from proxy.app import Shared
from proxy.gateway.body import read_limited
from proxy.gateway.context import Runtime
from proxy.store.api_keys import Keys
from proxy.store.idempotency import IdempotencyStore
from proxy.store.ledger.base import Ledger
from proxy.store.open import Stores
from proxy.store.tenants import TenantStore

SHARED = web.AppKey("shared", Shared)


def runtime(request: web.Request) -> Runtime:
    """The policy in force, and the tenants' cache of the proxy app."""
    return request.app[SHARED].runtime


def stores(request: web.Request) -> Stores:
    """The proxy app's stores: the admin API opens none of its own."""
    return request.app[SHARED].stores


def tenants(request: web.Request) -> TenantStore:
    return stores(request).tenants


def ledger(request: web.Request) -> Ledger:
    return stores(request).ledger


def idempotency(request: web.Request) -> IdempotencyStore:
    return stores(request).idempotency


def keys(request: web.Request) -> Keys:
    """The tenants' API keys."""
    return request.app[SHARED].keys


async def read_body(request: web.Request, limit: int) -> bytes:
    """A body read as the proxy port reads one: at most `limit` bytes, within
    `timeouts.read_request`."""
    return await read_limited(request, limit, runtime(request).policy.timeouts.read_request)
