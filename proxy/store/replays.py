"""Where client idempotency keys are recorded (see proxy/gateway/replay.py for what they mean).

A key holds a `Record`: the request's hash while the first call runs, then also its answer.
`claim` holds a free key or returns what it holds, in one operation; `keep` stores the answer
for WINDOW_S; `release` frees the key. The memory store serves one process; the Redis store uses
plain commands (no script) under the tenant's hash tag, see redis/layout.py (on a cluster, too: each
is one key, on the tenant's master). Any Redis error there is LedgerUnavailable (its boundary,
redis/errors.REPLAYS): the caller forwards or refuses by `fail_mode`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson
from redis.client import NEVER_DECODE

from proxy.core.bounded import Bounded
from proxy.store.boundary import GuardedStore
from proxy.store.redis.clients import Client, store_client
from proxy.store.redis.errors import REPLAYS
from proxy.store.redis.layout import idempotency_key

log = logging.getLogger(__name__)

WINDOW_S = 24 * 3600
"""How long an answer is replayed."""
MAX_ENTRIES = 10_000
"""memory://: answers held at most, all tenants together; beyond, the oldest are dropped."""
MAX_BYTES = 32 * 1024 * 1024
"""memory://: bytes of answers held at most (bodies, headers and a fixed cost per entry), all
tenants together; beyond, the oldest are dropped. A key whose answer was dropped runs (and is
charged) again."""
TENANT_ENTRIES = 1_000
"""memory://: answers one tenant holds at most; beyond, that tenant's oldest are dropped."""
TENANT_BYTES = 4 * 1024 * 1024
"""memory://: bytes of answers one tenant holds at most, likewise."""
MAX_CLAIMS = 10_000
"""memory://: keys claimed by calls still running, all tenants together. A claim is never
dropped to make room (a concurrent retry of its call would run too): a new key beyond the
bound is refused (ReplaysFull)."""
TENANT_CLAIMS = 1_000
"""memory://: keys one tenant's running calls hold at most, likewise."""
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


class ReplaysFull(Exception):
    """A new key cannot be claimed: the tenant's calls in flight (or everyone's) hold as many
    keys as the store keeps claims for."""


class MemoryReplays:
    """One process's keys. Answers are in a table bounded in entries and bytes, all tenants
    together (MAX_ENTRIES, MAX_BYTES) and each tenant (TENANT_ENTRIES, TENANT_BYTES), the
    oldest dropped first: one tenant's answers push out only its own until every tenant
    together reaches the global bound. Dropping an answer early only costs its key's retry a
    second run. Claims (calls in flight) are apart and never dropped: past MAX_CLAIMS, or a
    tenant's TENANT_CLAIMS, a new key is refused. Expired entries are purged at most once a
    minute."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        claim_ms: int = IN_FLIGHT_S * 1000,
        *,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        tenant_entries: int | None = None,
        tenant_bytes: int | None = None,
        max_claims: int | None = None,
        tenant_claims: int | None = None,
    ) -> None:
        """The bounds default to the module's constants, read when the store is made."""
        self._clock = clock
        self._claim_s = claim_ms / 1000
        self._entries: Bounded[tuple[str, str], tuple[float, Record]] = Bounded(
            MAX_ENTRIES if max_entries is None else max_entries,
            MAX_BYTES if max_bytes is None else max_bytes,
            size=lambda entry: _size(entry[1]),
            on_drop=lambda key, _: self._forget(key),
        )
        self._tenants = _PerTenant(
            TENANT_ENTRIES if tenant_entries is None else tenant_entries,
            TENANT_BYTES if tenant_bytes is None else tenant_bytes,
        )
        self._claims: dict[tuple[str, str], tuple[float, Record]] = {}
        self._claimed: Counter[str] = Counter()
        self._max_claims = MAX_CLAIMS if max_claims is None else max_claims
        self._tenant_claims = TENANT_CLAIMS if tenant_claims is None else tenant_claims
        self._next_purge = 0.0

    async def claim(self, tenant: str, digest: str, record: Record) -> Record | None:
        now = self._clock()
        self._purge(now)
        key = (tenant, digest)
        held = self._claims.get(key) or self._entries.get(key)
        if held is not None and held[0] > now:
            return held[1]
        self._unclaim(key)
        self._drop_answer(key)
        if len(self._claims) >= self._max_claims or self._claimed[tenant] >= self._tenant_claims:
            raise ReplaysFull(tenant)
        self._claims[key] = (now + self._claim_s, record)
        self._claimed[tenant] += 1
        return None

    async def keep(self, tenant: str, digest: str, record: Record) -> None:
        key = (tenant, digest)
        self._unclaim(key)
        self._drop_answer(key)
        size = _size(record)
        if size > min(self._tenants.max_bytes, self._entries.max_bytes or size):
            log.info("answer of %d bytes is larger than the replay store; not kept", size)
            return
        for old in self._tenants.room_for(tenant, size):
            self._drop_answer((tenant, old))
        self._entries.put(key, (self._clock() + WINDOW_S, record))
        self._tenants.add(tenant, digest, size)

    async def release(self, tenant: str, digest: str) -> None:
        self._unclaim((tenant, digest))
        self._drop_answer((tenant, digest))

    async def close(self) -> None:
        return None

    @property
    def bytes(self) -> int:
        return self._entries.bytes

    def __len__(self) -> int:
        return len(self._entries) + len(self._claims)

    def _purge(self, now: float) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + 60
        for key in [key for key, (expires, _) in self._claims.items() if expires <= now]:
            self._unclaim(key)
        expired = [
            key for key in self._entries if (entry := self._entries.get(key)) and entry[0] <= now
        ]
        for key in expired:
            self._drop_answer(key)

    def _unclaim(self, key: tuple[str, str]) -> None:
        if self._claims.pop(key, None) is not None:
            self._claimed[key[0]] -= 1
            if not self._claimed[key[0]]:
                del self._claimed[key[0]]

    def _drop_answer(self, key: tuple[str, str]) -> None:
        if self._entries.pop(key) is not None:
            self._forget(key)

    def _forget(self, key: tuple[str, str]) -> None:
        """An answer left the table: it no longer counts against its tenant."""
        self._tenants.remove(*key)


class _PerTenant:
    """Each tenant's answers, oldest first, with their sizes: what its bound counts."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._answers: dict[str, dict[str, int]] = {}
        self._bytes: Counter[str] = Counter()

    def room_for(self, tenant: str, size: int) -> list[str]:
        """The tenant's oldest answers to drop so one more of `size` bytes fits its bound."""
        answers = self._answers.get(tenant, {})
        count, held, gone = len(answers), self._bytes[tenant], []
        for digest, old in answers.items():
            if count < self.max_entries and held + size <= self.max_bytes:
                break
            gone.append(digest)
            count, held = count - 1, held - old
        return gone

    def add(self, tenant: str, digest: str, size: int) -> None:
        self._answers.setdefault(tenant, {})[digest] = size
        self._bytes[tenant] += size

    def remove(self, tenant: str, digest: str) -> None:
        answers = self._answers.get(tenant)
        size = answers.pop(digest, None) if answers is not None else None
        if size is None:
            return
        self._bytes[tenant] -= size
        if not answers:
            del self._answers[tenant]
            del self._bytes[tenant]


def _size(record: Record) -> int:
    headers = sum(len(name) + len(value) for name, value in record.headers)
    return ENTRY_BYTES + len(record.request_hash) + headers + len(record.body)


class RedisReplays(GuardedStore):
    """Plain commands under the tenant's hash tag: one `SET NX PX GET` claims the key and reads
    what it holds in one round trip; `SET PX` keeps the answer, `DEL` releases it. On the
    store's shared `client` (store/open.py), or on one of its own, closed with it."""

    boundary = REPLAYS
    store_name = "idempotency store"

    def __init__(
        self, url: str, claim_ms: int = IN_FLIGHT_S * 1000, *, client: Client | None = None
    ) -> None:
        self._owns_client = client is None
        self._client: Client = store_client(url) if client is None else client
        self._claim_ms = claim_ms

    async def claim(self, tenant: str, digest: str, record: Record) -> Record | None:
        # The client decodes replies; what a key holds is bytes (a body may be any), so this
        # reply is read undecoded (NEVER_DECODE), as the SET with GET that it is (`get`).
        held = await self._client.execute_command(
            "SET",
            idempotency_key(tenant, digest),
            encode(record),
            "NX",
            "PX",
            self._claim_ms,
            "GET",
            get=True,
            **{NEVER_DECODE: []},
        )
        return decode(held) if isinstance(held, bytes) else None

    async def keep(self, tenant: str, digest: str, record: Record) -> None:
        await self._client.set(idempotency_key(tenant, digest), encode(record), px=WINDOW_S * 1000)

    async def release(self, tenant: str, digest: str) -> None:
        await self._client.delete(idempotency_key(tenant, digest))

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
