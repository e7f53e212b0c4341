"""Store URLs → redis-py clients: one Redis, or a Redis Cluster.

    redis://host:port/db             one Redis (`rediss://`: TLS)
    redis+cluster://host:port        a Redis Cluster (`rediss+cluster://`: TLS); more seed nodes
                                     may follow, comma-separated: `redis+cluster://a:7000,b:7000`

In a cluster every per-tenant key carries the tenant's hash tag (layout.py), so a tenant's scripts
and commands all go to the master owning the tenant's slot, and each global key (`cy:v1:tenants`,
`cy:v1:tenant_index`, …) to the master owning its own slot. Nothing in the proxy sends a
multi-key command across slots or a MULTI. What has no key is spread explicitly: SCRIPT LOAD
goes to every master (redis-py routes it so), the store checks in safety.py visit every node,
and the key store subscribes on one node (store/api_keys/redis.py).

redis-py's cluster client fails a command at once (MaxConnectionsError) when the target node's
connection pool is exhausted. `BoundedCluster` makes a burst wait for a free connection instead,
up to WAIT_S, like the BlockingConnectionPool of the standalone ledger.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis import exceptions as rex
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

Client = Redis | RedisCluster

STANDALONE = ("redis", "rediss")
CLUSTER = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
WAIT_S = 5.0
"""How long a command waits for a free connection before the store counts as unavailable."""
SUBSCRIBERS = 1
"""Connections per cluster node beyond the command permits, for subscriptions (BoundedCluster)."""


def is_redis(url: str) -> bool:
    """Whether `url` names a Redis store, standalone or cluster."""
    scheme = urlsplit(url).scheme
    return scheme in STANDALONE or scheme in CLUSTER


def is_cluster(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER


def check_url(url: str) -> None:
    """Raise ValueError, saying what to write instead, unless `url` is a store URL that can
    work: memory://, redis[s]://host:port/db or redis[s]+cluster://host:port[,host:port…]."""
    scheme = urlsplit(url).scheme
    if scheme in CLUSTER:
        _cluster_seeds(url)
    elif scheme != "memory" and scheme not in STANDALONE:
        raise ValueError(
            f"unknown store URL scheme {scheme!r}: use memory://, redis://host:port/db, "
            "rediss://, redis+cluster://host:port or rediss+cluster://"
        )


def open_client(url: str, *, max_connections: int | None = None, **options: Any) -> Client:
    """A client for a Redis store URL; `options` are redis-py connection options. With
    `max_connections`, at most that many connections are open (per node, in a cluster) and a
    burst waits for a free one; without it a standalone pool grows as needed, and a cluster's
    is bounded at 100 per node (waited for too). Nothing connects until the first command."""
    parts = urlsplit(url)
    if parts.scheme in CLUSTER:
        (host, port), *more = _cluster_seeds(url)
        credentials = parts.netloc.rpartition("@")[0]
        first = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
        return BoundedCluster.from_url(
            urlunsplit((CLUSTER[parts.scheme], first, "", parts.query, "")),
            max_connections=max_connections or 100,
            startup_nodes=[ClusterNode(h, p) for h, p in more] or None,
            **options,
        )
    if parts.scheme not in STANDALONE:
        raise ValueError(f"{parts.scheme}:// is not a Redis store URL")
    if max_connections is None:
        return Redis.from_url(url, **options)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=WAIT_S, **options
    )
    return Redis.from_pool(pool)


def store_client(url: str, *, max_connections: int = 64, timeout_s: float = 5.0) -> Client:
    """The one redis-py client a process keeps for a Redis store: every store on the URL shares
    it (store/open.py), for everything but the hot path's scripts on one Redis (the wire).

    A bounded pool: a burst waits for a free connection (up to WAIT_S) instead of opening one
    connection per concurrent call, and a command unanswered after `timeout_s` fails. One
    immediate retry covers a pooled connection the server has closed (every script is safe to
    repeat: idempotent by id). Replies are decoded; a store that keeps bytes reads them with
    redis-py's NEVER_DECODE option."""
    return open_client(
        url,
        max_connections=max_connections,
        retry=Retry(NoBackoff(), 1, (rex.ConnectionError,)),
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=timeout_s,
        health_check_interval=30,
    )


async def nodes(client: RedisCluster) -> list[ClusterNode]:
    """Every node of the cluster (masters and replicas), as the client last saw the slot map."""
    await client.initialize()
    return client.get_nodes()


def owner(client: RedisCluster, key: str) -> str:
    """The name (`host:port`) of the master that owns `key`'s slot, as the client last saw the
    slot map."""
    node = client.get_node_from_key(key)
    if node is None:
        raise rex.SlotNotCoveredError(f"no master owns the slot of {key}")
    return str(node.name)


class BoundedCluster(RedisCluster):
    """A RedisCluster whose commands and pipelines wait (up to WAIT_S) for one of
    `max_connections` permits, so no node's pool is ever asked for more connections than it may
    open. A command sent to several nodes holds one permit and one connection per node. Each
    node's pool has SUBSCRIBERS connections more than the permits: the key store's subscription
    (store/api_keys/redis.py) holds one, for as long as it listens, without a permit."""

    def __init__(self, max_connections: int = 100, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections + SUBSCRIBERS, **kwargs)
        self._permits = asyncio.Semaphore(max_connections)

    @asynccontextmanager
    async def permit(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(WAIT_S):
                await self._permits.acquire()
        except TimeoutError:
            raise rex.ConnectionError(
                f"no free Redis Cluster connection within {WAIT_S:g} s"
            ) from None
        try:
            yield
        finally:
            self._permits.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.permit():
            # Before anything else: redis-py (8.1) routes a command before it learns the slot
            # map, and a burst of first commands races that discovery (one finds its connection
            # closed under it). Once the map is known this returns at once.
            await self.initialize()
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if transaction or shard_hint:
            raise ValueError("cluster pipelines here are never transactions")
        # mypy takes ClusterPipeline for abstract: redis-py sets `_event_dispatcher` in __init__.
        return _BoundedPipeline(self)  # type: ignore[abstract]


class _BoundedPipeline(ClusterPipeline):
    def __init__(self, client: BoundedCluster) -> None:
        super().__init__(client)
        self._bounded = client

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        async with self._bounded.permit():
            return await super().execute(raise_on_error, allow_redirections)


def _cluster_seeds(url: str) -> list[tuple[str, int]]:
    """The (host, port) seed nodes of a cluster URL; ValueError if it names a database or a
    seed without a port (the URL itself is not repeated: it may hold a password)."""
    parts = urlsplit(url)
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(
            f"the {parts.scheme}:// store URL names database {parts.path.strip('/')!r}, but a "
            "Redis Cluster has only database 0: drop it from the URL"
        )
    seeds = []
    for seed in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = seed.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"the {parts.scheme}:// store URL names a seed node {seed!r}: write each as "
                "host:port, comma-separated (redis+cluster://10.0.0.1:6379,10.0.0.2:6379)"
            )
        seeds.append((host.strip("[]"), int(port)))
    return seeds
