"""The safety of the Redis store itself: an eviction policy that never drops ledger keys, and an
epoch that tells a flushed or replaced store from the one this process started on.

A Redis that evicts keys under memory pressure (any `maxmemory-policy` but `noeviction`) can
silently drop a tenant's spent counters: warn at connect, or refuse with `--require-noeviction`.
`cy:v1:epoch` is written once (SET NX, a random id) when the store is first used and read back
by every process at start; the sweeper reads it each round (outside the hot path). If it is gone
or different, the data this process trusted is gone (FLUSHALL, failover to an empty replica), and
a fresh store would hand every tenant a full budget: the process fails closed, whatever
`fail_mode` says, and stays closed until an operator has looked at the store and restarted it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import cast

from redis import exceptions as rex
from redis.asyncio import Redis

from proxy.errors import LedgerEpochLost, StoreUnsafe
from proxy.ledger import keys
from proxy.ledger.tenants_redis import boundary

log = logging.getLogger(__name__)


async def check_eviction(client: Redis, *, require: bool) -> None:
    """Warn (or, with `require`, raise StoreUnsafe) unless `maxmemory-policy` is `noeviction`."""
    with boundary():
        try:
            reply = cast(dict[str, str], await client.config_get("maxmemory-policy"))
        except rex.ResponseError as exc:
            problem = (
                f"could not check the Redis store's maxmemory-policy (CONFIG GET refused: {exc}; "
                "managed Redis often disables it). Make sure it is noeviction"
            )
            _unsafe(problem, require)
            return
    policy = reply.get("maxmemory-policy", "")
    if policy != "noeviction":
        _unsafe(
            f"the Redis store's maxmemory-policy is {policy!r}, not 'noeviction': under memory "
            "pressure Redis may evict ledger keys and forget what tenants spent. Set "
            "maxmemory-policy noeviction",
            require,
        )


def _unsafe(problem: str, require: bool) -> None:
    if require:
        raise StoreUnsafe(f"{problem} (refusing to start: --require-noeviction).")
    log.warning("%s.", problem)


class Epoch:
    """The store's epoch as this process first saw it, and whether it has since been lost."""

    def __init__(self) -> None:
        self.expected: str | None = None
        self.lost = False
        self.on_lost: Callable[[str | None, str | None], None] | None = None
        """Called once, with (expected, found), when the epoch is found lost (the app raises
        the `ledger.epoch_lost` alert and drops the fail-open spill from it)."""

    def guard(self) -> None:
        """Raise LedgerEpochLost once the epoch is lost (no I/O: safe on the hot path)."""
        if self.lost:
            raise LedgerEpochLost(
                "The budget ledger's store was flushed or replaced since this proxy started, so "
                "its budgets cannot be trusted; the proxy refuses every call until an operator "
                "restarts it."
            )

    async def check(self, client: Redis) -> None:
        """Establish the epoch on first use (SET NX, then read back whichever id won); after
        that, compare. A lost epoch is logged at CRITICAL once and never recovers."""
        if self.lost:
            return
        with boundary():
            if self.expected is None:
                await client.set(keys.EPOCH, secrets.token_hex(16), nx=True)
                self.expected = cast(str | None, await client.get(keys.EPOCH))
                return
            found = cast(str | None, await client.get(keys.EPOCH))
        if found != self.expected:
            self.lost = True
            log.critical(
                "LEDGER EPOCH LOST: %s is %s, expected %s. The store was flushed or failed over "
                "to an empty replica; every reservation is refused (503 ledger_epoch_lost; "
                "or forwarded unbudgeted with on_store_lost: shadow) until an operator checks "
                "the store and restarts the proxy.",
                keys.EPOCH,
                "missing" if found is None else repr(found),
                self.expected,
            )
            if self.on_lost is not None:
                try:
                    self.on_lost(self.expected, found)
                except Exception:
                    log.exception("the epoch-lost hook failed")
