"""What every handler needs, stored once on the application under a typed key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from proxy.ledger.base import Ledger
from proxy.policy.runtime import Policy, Upstream


@dataclass(slots=True)
class Runtime:
    policy: Policy
    """Swapped whole when a reloaded policy checks clean; never mutated in place."""
    ledger: Ledger
    session: aiohttp.ClientSession
    api_keys: Mapping[str, str | None]
    """Upstream name → provider key, read from the environment at load. Never logged."""

    def default_upstream(self) -> Upstream | None:
        if self.policy.routes:
            return self.policy.upstreams[self.policy.routes[0].upstream]
        return next(iter(self.policy.upstreams.values()), None)


RUNTIME = web.AppKey("runtime", Runtime)
