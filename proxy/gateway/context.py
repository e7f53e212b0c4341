"""What every handler needs, stored once on the application under a typed key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from proxy.budget.directory import Directory
from proxy.gateway.metrics import Metrics
from proxy.gateway.spill import FailOpen
from proxy.policy.runtime import Policy
from proxy.policy.upstreams import Upstream
from proxy.store.api_keys import Keys
from proxy.store.ledger.base import Ledger
from proxy.store.replays import MemoryReplays, ReplayStore


@dataclass(slots=True)
class Runtime:
    policy: Policy
    """Swapped whole when a reloaded policy checks clean; never mutated in place."""
    ledger: Ledger
    session: aiohttp.ClientSession
    api_keys: Mapping[str, str | None]
    """Upstream name → provider key, read from the environment at load. Never logged."""
    keys: Keys
    """Tenants' API keys (gateway mode), cached for lookups; changes go to the store."""
    directory: Directory
    """Tenants' plan, mode and calendar, cached; reloaded when the store says stale."""
    on_rejected: Callable[[str | None, str], Awaitable[None]] | None = None
    """Called with (tenant if known, reason) when identification refuses a call."""
    replays: ReplayStore = field(default_factory=MemoryReplays)
    """Client idempotency keys and the answers they replay (see replay.py)."""
    fail_open: FailOpen = field(default_factory=FailOpen)
    """fail_mode: open while the ledger is down: local rate buckets and the spill (spill.py)."""
    metrics: Metrics | None = None
    """The application's metrics (cycles_alerts_total counts alerts fired); None in bare tests."""

    def forget_tenant(self, tenant: str) -> None:
        """The tenant's record changed: the next call reloads it."""
        self.directory.forget(tenant)

    def swap_policy(self, policy: Policy, api_keys: Mapping[str, str | None]) -> None:
        """A reloaded policy: the next call uses it, with tenants' plans read from it afresh."""
        self.policy = policy
        self.api_keys = api_keys
        self.directory.clear()

    def default_upstream(self) -> Upstream | None:
        if self.policy.routes:
            return self.policy.upstreams[self.policy.routes[0].upstream]
        return next(iter(self.policy.upstreams.values()), None)


RUNTIME = web.AppKey("runtime", Runtime)
