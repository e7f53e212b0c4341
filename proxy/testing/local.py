"""The proxy and a fake provider running in this process, on loopback ports: for the demo,
tests and benchmarks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from proxy.app import STORES, SWEEP_INTERVAL, AppConfig, StoreConfig, build_app
from proxy.gateway.context import LEDGER
from proxy.policy.loader import with_upstream_override
from proxy.policy.runtime import Policy
from proxy.policy.watcher import RELOAD_INTERVAL, Reload
from proxy.store.api_keys import KeyStore
from proxy.store.ledger.base import Ledger
from proxy.store.open import Stores
from proxy.testing.fake_upstream import FakeUpstream


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@dataclass(frozen=True, slots=True)
class Stack:
    url: str
    """The proxy's base URL; point an SDK at `url + "/v1"`."""
    fake: FakeUpstream
    ledger: Ledger
    policy: Policy
    app: web.Application
    stores: Stores
    """Every store of the proxy (`ledger` is `stores.ledger`)."""


@asynccontextmanager
async def local_stack(
    policy: Policy,
    *,
    store: str = "memory://",
    fake: FakeUpstream | None = None,
    ledger: Ledger | None = None,
    sweep_every: float | None = SWEEP_INTERVAL,
    key_store: KeyStore | None = None,
    policy_path: str | None = None,
    reload_every: float = RELOAD_INTERVAL,
) -> AsyncIterator[Stack]:
    """A fake provider, and the proxy pointed at it with the fake's key for every upstream.
    With `policy_path` (where `policy` was loaded from) a change to its files is reloaded."""
    fake = fake or FakeUpstream()
    async with serving(fake.app()) as fake_url:
        policy = with_upstream_override(policy, fake_url + "/v1")
        keys = {name: fake.settings.api_key for name in policy.upstreams}
        reload = None
        if policy_path is not None:
            reload = Reload(policy_path, reload_every, upstream=fake_url + "/v1")
        stores = StoreConfig(store, ledger=ledger, key_store=key_store)
        config = AppConfig(
            policy, stores, provider_keys=keys, sweep_every=sweep_every, reload=reload
        )
        app = build_app(config)
        async with serving(app) as url:
            yield Stack(url, fake, app[LEDGER], policy, app, app[STORES])
