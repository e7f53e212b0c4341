"""How the Redis stores run their Lua: the ledger (redis.py) and the tenant store
(store/tenants/redis.py) keep their state in the same per-tenant keys, and each of their changes is
one script, atomic per tenant. Both run them through one `Scripts`, which also holds the store's
epoch (store/redis/safety.py) that both check.

Scripts live in lua/*.lua; lua/common.lua and lua/audit.lua are prepended to each at load (and
rollup.lua to those that write the day's rollups, outbox.lua to those that settle, and
candidates.lua and quotas.lua to reserve.lua). They are called by SHA (`EVALSHA`, the SHA
computed locally); the first time Redis answers NOSCRIPT (a fresh or flushed server) all of them
are loaded with `SCRIPT LOAD` in one round trip (one for a whole burst: store/redis/flights.py) and
the call is retried once. In a cluster EVALSHA goes to the master owning the tenant's slot (its
first key), and SCRIPT LOAD to every master, so the one that answered NOSCRIPT (a new master, a
promoted replica) has them all for the retry. Time comes from Redis `TIME` inside the scripts, so
instances with skewed clocks agree on periods and deadlines.

On one Redis the scripts go over a connection of their own, the pipelined wire
(store/redis/wire.py), not the store's shared redis-py client: they are the hot path (a reserve
and a settle per call), and redis-py spends well over 100 µs of CPU on each, where the wire
packs a command once and sends a burst in one write. In a cluster they go over the shared client,
which routes each to its tenant's master.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Any

from redis import exceptions as rex
from redis.asyncio.cluster import RedisCluster

from proxy.core.types import ReservationSettings
from proxy.store.redis import layout
from proxy.store.redis.clients import Client, is_cluster
from proxy.store.redis.errors import NOT_SENT, REDIS
from proxy.store.redis.flights import Flights
from proxy.store.redis.safety import Epoch
from proxy.store.redis.wire import Head, ReplyError, Wire, head, pack_after

SCRIPTS = {
    "reserve": ("common", "audit", "rollup", "candidates", "quotas", "reserve"),
    "commit": ("common", "audit", "rollup", "outbox", "commit"),
    "release": ("common", "audit", "outbox", "release"),
    "sweep": ("common", "audit", "rollup", "outbox", "sweep"),
    "tenant": ("common", "audit", "tenant"),
    "tenant_ledger": ("common", "audit", "tenant_ledger"),
    "lines": ("common", "lines"),
    "outbox_ack": ("outbox_ack",),
}
HEADS_KEPT = 10_000
"""Packed command heads kept (one per script and tenant); past that they are packed anew."""
STORE = "the Redis ledger"
"""How errors name the store the scripts keep (the tenants' records are in it too)."""


@dataclass(frozen=True, slots=True)
class Script:
    source: str
    sha: str

    @classmethod
    def load(cls, parts: Sequence[str]) -> Script:
        lua = resources.files("proxy.store.ledger").joinpath("lua")
        source = "".join(lua.joinpath(f"{part}.lua").read_text() for part in parts)
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


class Scripts:
    """The scripts of the Redis store at `url`, run for a tenant on `client` (in a cluster) or
    on the wire (one Redis; `timeout_s` for each reply). Errors leave as ours (REDIS's table)."""

    def __init__(
        self, url: str, client: Client, settings: ReservationSettings, *, timeout_s: float = 5.0
    ) -> None:
        self.client = client
        self.cluster = is_cluster(url)
        if self.cluster:
            layout.due_key("", cluster=True)  # the slot table, built once before any call waits
        self.by_name = {name: Script.load(parts) for name, parts in SCRIPTS.items()}
        self.wire = None if self.cluster else Wire(url, timeout=timeout_s)
        self.epoch = Epoch()
        s = settings
        self._common = (
            f"{s.run_idle_ms}:{s.user_idle_ms}",
            str(s.period_grace_ms),
            str(s.tombstone_ms),
            f"{s.audit_retention_ms}:{s.history_retention_ms}:{s.history_values_per_level}",
        )
        self._reloads: Flights[str] = Flights()
        self._shards_known: set[str] = set()
        self._mapped = REDIS.around(STORE)
        self._heads: dict[tuple[str, str], Head] = {}

    async def run(self, name: str, tenant: str, args: Sequence[str]) -> Any:
        """Run script `name` for `tenant` with these ARGV (after the common ones)."""
        if self.wire is not None:
            with self._mapped:
                return await self._on_wire(self.wire, self._head(name, tenant), tuple(args))
        script, due = self.by_name[name], layout.due_key(tenant, self.cluster)
        tenant_keys = self._keys(tenant, due)
        with self._mapped:
            await self.know_shard(due)
            call = partial(
                self.client.evalsha,
                script.sha,
                len(tenant_keys),
                *tenant_keys,
                *self._common,
                *args,
            )
            try:
                return await call()
            except rex.NoScriptError:
                await self._reloads.run("scripts", self._load_scripts)
                return await call()

    @staticmethod
    def _keys(tenant: str, due: str) -> list[str]:
        return [
            *layout.tenant_keys(tenant),
            due,
            layout.users_key(tenant),
            layout.outbox_key(tenant),
        ]

    def _head(self, name: str, tenant: str) -> Head:
        """EVALSHA, the script's SHA, the tenant's keys and the common ARGV, packed once."""
        packed = self._heads.get((name, tenant))
        if packed is None:
            keys = self._keys(tenant, layout.due_key(tenant, self.cluster))
            command = ("EVALSHA", self.by_name[name].sha, str(len(keys)), *keys, *self._common)
            packed = head(command)
            if len(self._heads) >= HEADS_KEPT:
                self._heads.clear()
            self._heads[(name, tenant)] = packed
        return packed

    async def know_shard(self, due: str) -> None:
        """List a cluster's index key in `cy:v1:due_shards` when a script first writes it (once
        per key per process: calls racing the first do not wait for it, and the registry walk
        covers a tenant the sweeper misses meanwhile), so the sweeper reads every key that may
        hold a tenant."""
        if self.cluster and due not in self._shards_known:
            self._shards_known.add(due)
            try:
                await self.client.sadd(layout.DUE_SHARDS, due)
            except BaseException:
                self._shards_known.discard(due)
                raise

    async def _on_wire(self, wire: Wire, first: Head, args: tuple[str, ...]) -> Any:
        """One script call on the pipelined connection: scripts reloaded on NOSCRIPT (a
        restarted or flushed server), and one more try after a lost connection (every script
        is safe to repeat: idempotent by reservation id), as the redis-py pool does. Both can
        happen to one call: the connection is lost, and the server it reconnects to is new.
        What fails for good leaves as it came, for `run`'s table to translate."""
        reconnected = reloaded = maybe_ran = False
        while True:
            try:
                return await wire.send(pack_after(first, args))
            except ReplyError as exc:
                if reloaded or not str(exc).startswith("NOSCRIPT"):
                    raise
                reloaded = True
                await self._reloads.run("scripts", self._load_scripts)
            except OSError as exc:  # ConnectionError, refused, unreachable; TimeoutError
                maybe_ran = maybe_ran or not isinstance(exc, NOT_SENT)
                if reconnected or not isinstance(exc, ConnectionError):
                    if maybe_ran and isinstance(exc, NOT_SENT):
                        # This try was never written, but the one before it was: it may have run.
                        raise ConnectionError(str(exc)) from exc
                    raise
                reconnected = True

    async def _load_scripts(self) -> None:
        """SCRIPT LOAD every script in one round trip: a fresh server lacks them all. (A cluster
        pipeline cannot carry SCRIPT LOAD; there each goes to every master, all at once.)"""
        if isinstance(self.client, RedisCluster):
            loads = (self.client.script_load(s.source) for s in self.by_name.values())
            await asyncio.gather(*loads)
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for script in self.by_name.values():
                pipe.script_load(script.source)
            await pipe.execute()

    async def close(self) -> None:
        """End the reloads under way and close the wire (the client is the store's to close)."""
        await self._reloads.close()
        if self.wire is not None:
            await self.wire.close()
