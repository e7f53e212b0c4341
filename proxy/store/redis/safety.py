"""The safety of the Redis store itself: an eviction policy that never drops ledger keys, and an
epoch that tells a flushed or replaced store from the one this process started on.

A Redis that evicts keys under memory pressure (any `maxmemory-policy` but `noeviction`) can
silently drop a tenant's spent counters: warn at connect, or refuse with `--require-noeviction`.
`cy:v1:epoch` is written once (SET NX, a random id) when the store is first used and read back
by every process at start; the sweeper reads it each round (outside the hot path). If it is gone
or different, the data this process trusted is gone (FLUSHALL, failover to an empty replica), and
a fresh store would hand every tenant a full budget: the process fails closed, whatever
`fail_mode` says, and stays closed until an operator has looked at the store and restarted it.
These checks raise redis-py's errors as they come: the ledger that calls them maps them
(store/redis/errors.py).

In a Redis Cluster one key lives on one master, and a flush of (or failover to an empty replica
of) any other master would go unnoticed. So there each master that owns slots gets an epoch key
of its own: the first of `cy:v1:epoch`, `cy:v1:epoch:{0}`, `cy:v1:epoch:{1}`, … whose slot it
owns, computed from the slot map the client holds. A process checks every key it has recorded
(each moves with its slot when the cluster is resharded) and records one for any master it has
not seen before (a master added since). The eviction check, likewise, reads every node, replicas
included: a replica is promoted with its own configuration.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, cast

from redis import exceptions as rex
from redis.asyncio.cluster import RedisCluster

from proxy.core.errors import LedgerEpochLost, StoreUnsafe
from proxy.store.redis import layout
from proxy.store.redis.clients import Client, nodes, owner

log = logging.getLogger(__name__)


async def check_eviction(client: Client, *, require: bool) -> None:
    """Warn (or, with `require`, raise StoreUnsafe) unless `maxmemory-policy` is `noeviction`
    (in a cluster, on every node)."""
    if not isinstance(client, RedisCluster):
        await _check_policy(client.config_get("maxmemory-policy"), "Redis store", require)
        return
    every = await nodes(client)
    for node in every:
        reply = client.config_get("maxmemory-policy", target_nodes=node)
        await _check_policy(reply, f"Redis Cluster node {node.name}", require)


async def _check_policy(reply: Awaitable[Any], store: str, require: bool) -> None:
    try:
        policies = cast(dict[str, str], await reply)
    except rex.ResponseError as exc:
        problem = (
            f"could not check the {store}'s maxmemory-policy (CONFIG GET refused: {exc}; "
            "managed Redis often disables it). Make sure it is noeviction"
        )
        _unsafe(problem, require)
        return
    policy = policies.get("maxmemory-policy", "")
    if policy != "noeviction":
        _unsafe(
            f"the {store}'s maxmemory-policy is {policy!r}, not 'noeviction': under memory "
            "pressure Redis may evict ledger keys and forget what tenants spent. Set "
            "maxmemory-policy noeviction",
            require,
        )


def _unsafe(problem: str, require: bool) -> None:
    if require:
        raise StoreUnsafe(f"{problem} (refusing to start: --require-noeviction).")
    log.warning("%s.", problem)


PLAIN = "plain"
"""What `cy:v1:user_ids` holds under `user_ids: plain` (budget/end_users.py PLAIN)."""


async def check_user_ids(client: Client, fingerprint: str) -> None:
    """Record how end-user ids are kept, `plain` or the fingerprint of the secret they are hashed
    with (budget/end_users.py), unless the store holds it already (SET NX: the first proxy on a
    store, or on one from before it was recorded, writes it), and raise StoreUnsafe when it holds
    another: replicas keeping ids differently would keep one user under two ids, each with a
    budget of its own."""
    await client.set(layout.USER_IDS, fingerprint, nx=True)
    found = await client.get(layout.USER_IDS)
    found = found.decode() if isinstance(found, bytes) else found
    if found == fingerprint:
        return
    fix = (
        f"stop every replica, delete {layout.USER_IDS} and start them with the new one (each "
        "end user then starts afresh)"
    )
    if PLAIN not in (found, fingerprint):
        raise StoreUnsafe(
            "user_ids: hash: this proxy's secret is not the one this store's end-user ids were "
            "hashed with (another replica uses another secret; every replica needs the same). "
            f"To change the secret on purpose, {fix}"
        )
    mine, theirs = ("plain", "hash") if fingerprint == PLAIN else ("hash", "plain")
    raise StoreUnsafe(
        f"user_ids: {mine}: this store's end-user ids are kept under user_ids: {theirs} (another "
        "replica keeps them so; every replica needs the same user_ids). To switch on purpose, "
        + fix.replace("new one", "new setting")
    )


class Epoch:
    """The store's epoch as this process first saw it, and whether it has since been lost."""

    def __init__(self) -> None:
        self.recorded: dict[str, str | None] = {}
        """Each epoch key this process watches → the value it first read there."""
        self.lost = False
        self.on_lost: Callable[[str | None, str | None], None] | None = None
        """Called once, with (expected, found), when the epoch is found lost (the app raises
        the `ledger.epoch_lost` alert and drops the fail-open spill from it)."""
        self._mine = secrets.token_hex(16)

    @property
    def expected(self) -> str | None:
        """The epoch this process trusts: `cy:v1:epoch`'s value as first read (None before)."""
        return self.recorded.get(layout.EPOCH)

    def guard(self) -> None:
        """Raise LedgerEpochLost once the epoch is lost (no I/O: safe on the hot path)."""
        if self.lost:
            raise LedgerEpochLost(
                "The budget ledger's store was flushed or replaced since this proxy started, so "
                "its budgets cannot be trusted; the proxy refuses every call until an operator "
                "restarts it."
            )

    async def check(self, client: Client) -> None:
        """Establish the epoch on first use (SET NX, then read back whichever id won); after
        that, compare. A lost epoch is logged at CRITICAL once and never recovers."""
        if self.lost:
            return
        new = [name for name in await _epoch_keys(client) if name not in self.recorded]
        await asyncio.gather(*(client.set(name, self._mine, nx=True) for name in new))
        names = [*self.recorded, *new]
        found = dict(zip(names, await asyncio.gather(*map(client.get, names)), strict=True))
        for name, expected in self.recorded.items():
            if found[name] != expected:
                self._lose(client, name, expected, cast(str | None, found[name]))
                return
        self.recorded.update((name, cast(str | None, found[name])) for name in new)

    def _lose(self, client: Client, name: str, expected: str | None, found: str | None) -> None:
        self.lost = True
        where = ""
        if isinstance(client, RedisCluster):
            where = f" (on the master {owner(client, name)})"
        log.critical(
            "LEDGER EPOCH LOST: %s%s is %s, expected %s. The store was flushed or failed over "
            "to an empty replica; every reservation is refused (503 ledger_epoch_lost; "
            "or forwarded unbudgeted with on_store_lost: shadow) until an operator checks "
            "the store and restarts the proxy.",
            name,
            where,
            "missing" if found is None else repr(found),
            expected,
        )
        if self.on_lost is not None:
            try:
                self.on_lost(expected, found)
            except Exception:
                log.exception("the epoch-lost hook failed")


async def _epoch_keys(client: Client) -> list[str]:
    """The epoch keys to hold: `cy:v1:epoch` on one Redis; in a cluster, for each master that
    owns slots, the first candidate (layout.epoch_candidates) in a slot it owns."""
    if not isinstance(client, RedisCluster):
        return [layout.EPOCH]
    await client.initialize()
    masters = {n[0].name for n in client.nodes_manager.slots_cache.values() if n}
    chosen: dict[str, str] = {}
    for name in layout.epoch_candidates():
        chosen.setdefault(owner(client, name), name)
        if len(chosen) == len(masters):
            break
    return list(chosen.values())
