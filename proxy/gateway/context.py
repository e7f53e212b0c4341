"""The proxy application's shared state, each piece under its own typed key (aiohttp's
`AppKey`): what a policy reload swaps (`Runtime`), and the resources app.py opens and closes,
one cleanup context each. Keys for the parts built on them sit beside their types (METRICS in
metrics.py, EVENTS in events.py, ALERTS in alerts.py, ADMISSION in admission.py, PIPELINE in
pipeline.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from proxy.budget.directory import Directory
from proxy.budget.end_users import UserIds
from proxy.gateway.spill import FailOpen
from proxy.policy.runtime import Policy
from proxy.policy.upstreams import Upstream
from proxy.store.api_keys import Keys
from proxy.store.ledger.base import Ledger
from proxy.store.mcp_sessions import McpSessions
from proxy.store.replays import ReplayStore


@dataclass(slots=True)
class Runtime:
    """What a reload swaps, together: the policy, the provider keys and the end-user id secret
    read for it, and the tenants' settings cached from it."""

    policy: Policy
    """Swapped whole when a reloaded policy checks clean; never mutated in place."""
    provider_keys: Mapping[str, str | None]
    """Upstream name → provider key, read from the environment at load. Never logged."""
    directory: Directory
    """Tenants' plan, mode and calendar, cached; reloaded when the store says stale."""
    users: UserIds = field(default_factory=UserIds)
    """How end-user ids are kept (the policy's `user_ids`, with its secret). Never logged."""

    def forget_tenant(self, tenant: str) -> None:
        """The tenant's record changed: the next call reloads it."""
        self.directory.forget(tenant)

    def swap_policy(
        self, policy: Policy, provider_keys: Mapping[str, str | None], users: UserIds
    ) -> None:
        """A reloaded policy: the next call uses it, with tenants' plans read from it afresh."""
        self.policy = policy
        self.provider_keys = provider_keys
        self.users = users
        self.directory.clear()

    def default_upstream(self) -> Upstream | None:
        if self.policy.routes:
            return self.policy.upstreams[self.policy.routes[0].upstream]
        return next(iter(self.policy.upstreams.values()), None)


RUNTIME = web.AppKey("runtime", Runtime)
LEDGER: web.AppKey[Ledger] = web.AppKey("ledger")
API_KEYS = web.AppKey("api_keys", Keys)
"""Tenants' API keys (gateway mode), cached for lookups; changes go to the store."""
REPLAYS: web.AppKey[ReplayStore] = web.AppKey("replays")
"""Client idempotency keys and the answers they replay (replay.py)."""
MCP_SESSIONS: web.AppKey[McpSessions] = web.AppKey("mcp_sessions")
"""Which tenant bound which MCP session (store/mcp_sessions.py), for the MCP front."""
SESSION = web.AppKey("session", aiohttp.ClientSession)
"""The upstream connection pool."""
FAIL_OPEN = web.AppKey("fail_open", FailOpen)
"""fail_mode: open while the ledger is down: local rate buckets and the spill (spill.py)."""
