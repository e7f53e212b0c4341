"""Keys in Redis, shared by every replica.

Layout (beside the ledger's keys, see proxy/store/redis/layout.py):

    cy:v1:{t:<tenant>}:keys  hash     key_id -> record  the tenant's keys: the source of truth
    cy:v1:keys               hash     sha -> record     index from a request's key to its tenant
    cy:v1:events             channel  `key <sha>`       published after every change

A record is `sha key_id tenant workspace app state expires_ms created_ms prefix` (records.encode),
'-' for a missing workspace or app, then `workflow agent toolset run` for a key that pins one of
those, then `user` for one that pins an end user (records.encode says why only then). The global
index cannot carry a tenant's hash tag, so in Redis Cluster the two hashes live in different slots
and no script can write both: every change writes the tenant side first, then the global index, then
publishes. `lookup` reads the global index and confirms against the tenant side, so if a process
dies between the two writes the tenant side wins: a half-created key does not authenticate and a
half-revoked key is already revoked (and re-running the revoke repairs the index). A cache miss
therefore costs two round trips; a negative answer one.

Every replica's cache subscribes to `cy:v1:events` and drops the key named in each message; on
(re)subscribing it drops everything, since messages sent while it was away are lost.

In a Redis Cluster a classic PUBLISH reaches every node (the cluster bus forwards it), so a
replica subscribes on one node, a different one each time it resubscribes (a dead node is left
behind); PUBLISH cannot ride in a cluster pipeline, so there the announcements follow the index
write one by one, still in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from proxy.store.api_keys.records import (
    KeyRecord,
    KeyStoreBase,
    Listener,
    Row,
    decode,
    encode,
    now_ms,
)
from proxy.store.boundary import GuardedStore
from proxy.store.redis.clients import Client, store_client
from proxy.store.redis.errors import REDIS
from proxy.store.redis.layout import PREFIX

log = logging.getLogger(__name__)

GLOBAL = f"{PREFIX}:keys"
EVENTS = f"{PREFIX}:events"
RESUBSCRIBE_AFTER_S = 1.0


def tenant_keys(tenant: str) -> str:
    return f"{PREFIX}:{{t:{tenant}}}:keys"


class RedisKeyStore(KeyStoreBase, GuardedStore):
    """On the store's shared `client` (store/open.py), or on one of its own, closed with it."""

    boundary = REDIS
    store_name = "the Redis key store"

    def __init__(
        self, url: str, clock: Callable[[], int] = now_ms, *, client: Client | None = None
    ) -> None:
        super().__init__(clock)
        self._owns_client = client is None
        self._client: Client = store_client(url) if client is None else client
        self._subscriptions = 0

    async def lookup(self, sha: str) -> KeyRecord | None:
        indexed = await self._client.hget(GLOBAL, sha)
        if indexed is None:
            return None
        _, record = decode(str(indexed))
        truth = await self._client.hget(tenant_keys(record.tenant), record.key_id)
        if truth is None:
            return None
        true_sha, true_record = decode(str(truth))
        return true_record if true_sha == sha else None

    async def _rows(self, tenant: str) -> dict[str, Row]:
        raw = await self._client.hgetall(tenant_keys(tenant))
        return {str(key_id): decode(str(text)) for key_id, text in raw.items()}

    async def _put(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        by_tenant: dict[str, dict[Any, Any]] = {}
        for sha, record in rows:
            by_tenant.setdefault(record.tenant, {})[record.key_id] = encode(sha, record)
        for tenant, fields in by_tenant.items():
            await self._client.hset(tenant_keys(tenant), mapping=fields)
        index: dict[Any, Any] = {sha: encode(sha, record) for sha, record in rows}
        if isinstance(self._client, RedisCluster):
            await self._client.hset(GLOBAL, mapping=index)
            for sha, _ in rows:
                await self._client.publish(EVENTS, f"key {sha}")
        else:
            # One round trip, executed in order: the index, then the announcements.
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(GLOBAL, mapping=index)
                for sha, _ in rows:
                    pipe.publish(EVENTS, f"key {sha}")
                await pipe.execute()
        self._changed([sha for sha, _ in rows])

    async def follow(self, listener: Listener) -> None:
        """Evict on every `key <sha>` message, resubscribing after a lost connection."""
        while True:
            try:
                await self._listen(listener)
            except self.boundary.foreign as exc:
                log.warning("key events: subscription lost (%s); resubscribing", exc)
            listener.clear()
            await asyncio.sleep(RESUBSCRIBE_AFTER_S)

    async def _listen(self, listener: Listener) -> None:
        pubsub = await self._pubsub()
        try:
            await pubsub.subscribe(EVENTS)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    listener.clear()
                elif message["type"] == "message":
                    kind, _, sha = str(message["data"]).partition(" ")
                    if kind == "key":
                        listener.evict(sha)
        finally:
            await pubsub.aclose()

    async def _pubsub(self) -> PubSub:
        """A subscriber connection: in a cluster on the next node in turn (see above)."""
        if not isinstance(self._client, RedisCluster):
            return self._client.pubsub()
        await self._client.initialize()
        nodes = self._client.get_nodes()
        self._subscriptions += 1
        return self._client.pubsub(node=nodes[self._subscriptions % len(nodes)])

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
