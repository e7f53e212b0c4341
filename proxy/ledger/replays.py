"""Where client idempotency keys are recorded (see proxy/replay.py for what they mean).

A key holds a `Record`: the request's hash while the first call runs, then also its answer.
`claim` holds a free key or returns what it holds, in one operation; `keep` stores the answer
for WINDOW_S; `release` frees the key. The memory store serves one process; the Redis store uses
plain commands (no script) under the tenant's hash tag, see keys.py (on a cluster, too: each is
one key, on the tenant's master).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson

from proxy.bounded import Bounded
from proxy.errors import LedgerUnavailable
from proxy.ledger.clients import ERRORS, Client, is_redis, open_client
from proxy.ledger.keys import idempotency_key

log = logging.getLogger(__name__)

WINDOW_S = 24 * 3600
"""How long an answer is replayed."""
MAX_ENTRIES = 10_000
"""memory://: keys (claims and answers) held at most; beyond, the oldest are dropped."""
MAX_BYTES = 32 * 1024 * 1024
"""memory://: bytes of answers held at most (bodies, headers and a fixed cost per entry);
beyond, the oldest are dropped. A key whose answer was dropped runs (and is charged) again."""
ENTRY_BYTES = 256
"""What an entry costs besides its body and headers (key, hash, bookkeeping), roughly."""
IN_FLIGHT_S = 20 * 60
"""The claim's default life; the app passes `reservations.cap_ms`, which the policy check keeps
longer than any call's longest stream (every route's) plus draining."""


@dataclass(frozen=True, slots=True)
class Record:
    """What a key holds: the request's hash, and once the call answered, the answer."""

    request_hash: str
    status: int = 0
    """0 while the first call is still running."""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def encode(record: Record) -> bytes:
    """A JSON head (orjson escapes every newline), a newline, then the body as it was."""
    head = orjson.dumps({"h": record.request_hash, "s": record.status, "hd": record.headers})
    return head + b"\n" + record.body


def decode(raw: bytes) -> Record:
    head, _, body = raw.partition(b"\n")
    data = orjson.loads(head)
    return Record(data["h"], data["s"], tuple((k, v) for k, v in data["hd"]), body)


class ReplayStore(Protocol):
    async def claim(self, tenant: str, digest: str, record: Record) -> Record | None:
        """Hold the key for this call: None if it was free, else what it holds."""
        ...

    async def keep(self, tenant: str, digest: str, record: Record) -> None:
        """The call answered: replay `record` for WINDOW_S."""
        ...

    async def release(self, tenant: str, digest: str) -> None:
        """The call failed or cannot be replayed: the next call with the key runs."""
        ...

    async def close(self) -> None: ...


class MemoryReplays:
    """One process's keys, in a table bounded in entries and bytes (MAX_ENTRIES, MAX_BYTES:
    the oldest dropped first), purged of expired entries at most once a minute. Dropping an
    answer early only costs its key's retry a second run; dropping a claim (more keyed calls
    in flight than MAX_ENTRIES) lets a concurrent retry of that call run too."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        claim_ms: int = IN_FLIGHT_S * 1000,
        *,
        max_entries: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self._clock = clock
        self._claim_s = claim_ms / 1000
        self._entries: Bounded[tuple[str, str], tuple[float, Record]] = Bounded(
            MAX_ENTRIES if max_entries is None else max_entries,
            MAX_BYTES if max_bytes is None else max_bytes,
            size=lambda entry: _size(entry[1]),
        )
        self._next_purge = 0.0

    async def claim(self, tenant: str, digest: str, record: Record) -> Record | None:
        now = self._clock()
        if now >= self._next_purge:
            self._entries.drop_if(lambda entry: entry[0] <= now)
            self._next_purge = now + 60
        held = self._entries.get((tenant, digest))
        if held is not None and held[0] > now:
            return held[1]
        self._entries.put((tenant, digest), (now + self._claim_s, record))
        return None

    async def keep(self, tenant: str, digest: str, record: Record) -> None:
        if not self._entries.put((tenant, digest), (self._clock() + WINDOW_S, record)):
            log.info("answer of %d bytes is larger than the replay store; not kept", _size(record))

    async def release(self, tenant: str, digest: str) -> None:
        self._entries.pop((tenant, digest))

    async def close(self) -> None:
        return None

    @property
    def bytes(self) -> int:
        return self._entries.bytes

    def __len__(self) -> int:
        return len(self._entries)


def _size(record: Record) -> int:
    headers = sum(len(name) + len(value) for name, value in record.headers)
    return ENTRY_BYTES + len(record.request_hash) + headers + len(record.body)


class RedisReplays:
    """Plain commands under the tenant's hash tag: one `SET NX PX GET` claims the key and reads
    what it holds in one round trip; `SET PX` keeps the answer, `DEL` releases it."""

    def __init__(self, url: str, claim_ms: int = IN_FLIGHT_S * 1000) -> None:
        self._client: Client = open_client(url, socket_connect_timeout=2, socket_timeout=5)
        self._claim_ms = claim_ms

    async def claim(self, tenant: str, digest: str, record: Record) -> Record | None:
        try:
            held = await self._client.set(
                idempotency_key(tenant, digest),
                encode(record),
                nx=True,
                px=self._claim_ms,
                get=True,
            )
        except ERRORS as exc:
            raise LedgerUnavailable(f"idempotency store: {exc}") from None
        return decode(held) if isinstance(held, bytes) else None

    async def keep(self, tenant: str, digest: str, record: Record) -> None:
        try:
            await self._client.set(
                idempotency_key(tenant, digest), encode(record), px=WINDOW_S * 1000
            )
        except ERRORS as exc:
            raise LedgerUnavailable(f"idempotency store: {exc}") from None

    async def release(self, tenant: str, digest: str) -> None:
        try:
            await self._client.delete(idempotency_key(tenant, digest))
        except ERRORS as exc:
            raise LedgerUnavailable(f"idempotency store: {exc}") from None

    async def close(self) -> None:
        await self._client.aclose()


def open_replays(url: str, claim_ms: int = IN_FLIGHT_S * 1000) -> ReplayStore:
    """The store beside the ledger: Redis for a Redis store URL (cluster too), else this process.
    A claim lives `claim_ms` (the reservation cap: no call outlives it)."""
    if is_redis(url):
        return RedisReplays(url, claim_ms)
    return MemoryReplays(claim_ms=claim_ms)
