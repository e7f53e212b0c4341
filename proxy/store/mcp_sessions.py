"""Which tenant opened which MCP session (issue 20; the front is proxy/mcp/).

An MCP server names a session in the `Mcp-Session-Id` it answers an initialize with. The proxy
binds that id to the caller's tenant (`bind`), and lets a later request carrying it through only
when the caller's tenant bound it (`holds`, which also refreshes its life); DELETE `forget`s it.
A session is keyed under the tenant (and the server), so another tenant's lookup simply finds
nothing: no tenant can ride on a session it learned of.

A request id in flight in a session is `claim`ed (true for one caller only, across every replica
on the store) until `free`d or its TTL ends (proxy/mcp/inflight.py); `holds_claiming` does both
the session check and the claim in one round trip. A claim holds its caller's token, and `free`
deletes it only while it still holds that token: a claim that expired and was taken by another
request is not the first one's to free.

The memory store serves one process, bounded (MAX_BINDINGS, TENANT_BINDINGS; the oldest dropped:
its client is answered 404 and initializes again; its claims are the requests in flight). The
Redis store uses plain commands under the tenant's hash tag (redis/layout.py mcp_session_key,
mcp_claim_key; on a cluster too: one key each, on the tenant's master; a claim's `SET NX PX` goes
with the session's `PEXPIRE` in one pipeline, no MULTI; `free` is a compare-and-delete script,
FREE_CLAIM). Session and request ids are hashed
(sha256) into the keys, since a server or a client may make them long. Any Redis error is
LedgerUnavailable (the replay store's boundary, redis/errors.REPLAYS).
"""

from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Callable
from typing import Protocol

from proxy.core.bounded import Bounded
from proxy.store.boundary import GuardedStore
from proxy.store.redis.clients import Client, store_client
from proxy.store.redis.errors import REPLAYS
from proxy.store.redis.layout import mcp_claim_key, mcp_session_key

MAX_BINDINGS = 100_000
"""memory://: sessions bound at most, all tenants together; beyond, the oldest are dropped."""
TENANT_BINDINGS = 10_000
"""memory://: sessions one tenant has bound at most; beyond, that tenant's oldest are dropped."""
MAX_CLAIMS = 100_000
"""memory://: request ids claimed at most, all tenants together; expired claims are dropped
first, and beyond it a new claim is refused (ClaimsFull): a live claim is never dropped,
so one tenant cannot free another's id in flight."""


class ClaimsFull(Exception):
    """memory://: a new request id cannot be claimed: MAX_CLAIMS live claims are held."""


class McpSessions(Protocol):
    async def bind(self, tenant: str, server: str, session: str, ttl_ms: int) -> None:
        """`session` of `server` is the tenant's for `ttl_ms` (again, if it was already)."""
        ...

    async def holds(self, tenant: str, server: str, session: str, ttl_ms: int) -> bool:
        """Whether this tenant bound `session` of `server` and it has not expired; if so, it
        lives `ttl_ms` from now."""
        ...

    async def forget(self, tenant: str, server: str, session: str) -> None:
        """The session ended: it is no longer the tenant's."""
        ...

    async def claim(
        self, tenant: str, server: str, session: str, request_id: str, ttl_ms: int, token: str
    ) -> bool:
        """True when this call now holds `request_id` in the session under `token`, for
        `ttl_ms` or until `free`d; False when another holds it."""
        ...

    async def free(
        self, tenant: str, server: str, session: str, request_id: str, token: str
    ) -> None:
        """`request_id` is no longer in flight in the session, if its claim is still the one
        made with `token` (else nothing: another request holds it now)."""
        ...

    async def holds_claiming(
        self,
        tenant: str,
        server: str,
        session: str,
        ttl_ms: int,
        request_id: str,
        claim_ms: int,
        token: str,
    ) -> tuple[bool, bool]:
        """(`holds`, `claim`) in one round trip; nothing stays claimed in a session not held."""
        ...

    async def close(self) -> None: ...


def session_digest(session: str) -> str:
    """The session id as the stores key it: hex sha256 (ids may be long)."""
    return hashlib.sha256(session.encode()).hexdigest()


def check_ttl(ttl_ms: int) -> int:
    if type(ttl_ms) is not int or ttl_ms < 1:
        raise ValueError(f"an MCP session's ttl_ms must be a positive integer, got {ttl_ms!r}")
    return ttl_ms


Key = tuple[str, str, str]
"""(tenant, server, session digest)."""
ClaimKey = tuple[str, str, str, str]
"""(tenant, server, session digest, request id digest)."""


class MemorySessions:
    """One process's bindings, oldest first: at most `max_bindings` in all and
    `tenant_bindings` per tenant, beyond which the oldest go (one tenant's push out only its
    own until all together reach the global bound). Binding or holding a session makes it the
    newest. Expired bindings are dropped when looked up, or as the oldest. A claim is freed
    when its handler ends with the server done with the id, else kept to its expiry; expired
    claims are dropped as new ones are made (a heap by expiry); beyond `max_claims` live ones a
    new claim is refused (ClaimsFull), never a live one dropped."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_bindings: int | None = None,
        tenant_bindings: int | None = None,
        max_claims: int | None = None,
    ) -> None:
        """The bounds default to the module's constants, read when the store is made."""
        self._clock = clock
        self._all: Bounded[Key, float] = Bounded(
            MAX_BINDINGS if max_bindings is None else max_bindings,
            on_drop=lambda key, _: self._untrack(key),
        )
        self._tenant_max = TENANT_BINDINGS if tenant_bindings is None else tenant_bindings
        self._by_tenant: dict[str, dict[Key, None]] = {}
        """Each tenant's bindings, oldest first (dicts keep insertion order)."""
        self._claims: dict[ClaimKey, tuple[float, str]] = {}
        """Request ids in flight -> when their claim expires, and its token."""
        self._expiring: list[tuple[float, ClaimKey, str]] = []
        """Every claim made (freed or not) as (expiry, key, token), soonest first."""
        self._claims_max = MAX_CLAIMS if max_claims is None else max_claims

    async def bind(self, tenant: str, server: str, session: str, ttl_ms: int) -> None:
        self._put(_key(tenant, server, session), check_ttl(ttl_ms))

    async def holds(self, tenant: str, server: str, session: str, ttl_ms: int) -> bool:
        check_ttl(ttl_ms)
        key = _key(tenant, server, session)
        expires = self._all.get(key)
        if expires is None:
            return False
        if expires <= self._clock():
            self._drop(key)
            return False
        self._put(key, ttl_ms)
        return True

    async def forget(self, tenant: str, server: str, session: str) -> None:
        self._drop(_key(tenant, server, session))

    async def claim(
        self, tenant: str, server: str, session: str, request_id: str, ttl_ms: int, token: str
    ) -> bool:
        check_ttl(ttl_ms)
        key = (*_key(tenant, server, session), request_digest(request_id))
        now = self._clock()
        held = self._claims.get(key)
        if held is not None and held[0] > now:
            return False
        self._prune(now)
        if len(self._claims) >= self._claims_max:
            raise ClaimsFull(f"{len(self._claims)} MCP request ids in flight")
        expires = now + ttl_ms / 1000
        self._claims[key] = (expires, token)
        heapq.heappush(self._expiring, (expires, key, token))
        return True

    def _prune(self, now: float) -> None:
        """Expired claims dropped (live ones never are); the heap rebuilt when freed claims'
        entries make it twice the bound."""
        heap, claims = self._expiring, self._claims
        while heap and heap[0][0] <= now:
            expires, key, token = heapq.heappop(heap)
            if claims.get(key) == (expires, token):
                del claims[key]
        if len(heap) > 2 * max(self._claims_max, len(claims)):
            self._expiring = [(e, k, t) for k, (e, t) in claims.items()]
            heapq.heapify(self._expiring)

    async def free(
        self, tenant: str, server: str, session: str, request_id: str, token: str
    ) -> None:
        key = (*_key(tenant, server, session), request_digest(request_id))
        held = self._claims.get(key)
        if held is not None and held[1] == token:
            del self._claims[key]

    async def holds_claiming(
        self,
        tenant: str,
        server: str,
        session: str,
        ttl_ms: int,
        request_id: str,
        claim_ms: int,
        token: str,
    ) -> tuple[bool, bool]:
        check_ttl(claim_ms)
        if not await self.holds(tenant, server, session, ttl_ms):
            return False, False
        return True, await self.claim(tenant, server, session, request_id, claim_ms, token)

    async def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._all)

    def _put(self, key: Key, ttl_ms: int) -> None:
        self._drop(key)
        own = self._by_tenant.setdefault(key[0], {})
        while len(own) >= self._tenant_max:
            self._drop(next(iter(own)))
        own[key] = None
        self._all.put(key, self._clock() + ttl_ms / 1000)

    def _drop(self, key: Key) -> None:
        if self._all.pop(key) is not None:
            self._untrack(key)

    def _untrack(self, key: Key) -> None:
        """A binding left the table: it no longer counts against its tenant."""
        own = self._by_tenant.get(key[0])
        if own is None:
            return
        own.pop(key, None)
        if not own:
            del self._by_tenant[key[0]]


def _key(tenant: str, server: str, session: str) -> Key:
    return (tenant, server, session_digest(session))


def request_digest(request_id: str) -> str:
    """A request id (as the server files it: `str(id)`) as the stores key it: hex sha256."""
    return hashlib.sha256(request_id.encode()).hexdigest()


def claim_key(tenant: str, server: str, session: str, request_id: str) -> str:
    return mcp_claim_key(tenant, server, session_digest(session), request_digest(request_id))


FREE_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
"""A claim deleted only while it holds the freeing request's token (one key: the tenant's slot)."""


class RedisSessions(GuardedStore):
    """One key per binding under the tenant's hash tag: `SET PX` binds, `PEXPIRE` both tells
    whether the tenant holds a session and refreshes it (one round trip), `DEL` forgets. One key
    per claim beside it: `SET NX PX` claims (the token as its value), FREE_CLAIM
    frees. On the store's shared `client`
    (store/open.py), or on one of its own, closed with it."""

    boundary = REPLAYS
    store_name = "MCP session store"

    def __init__(self, url: str, *, client: Client | None = None) -> None:
        self._owns_client = client is None
        self._client: Client = store_client(url) if client is None else client

    async def bind(self, tenant: str, server: str, session: str, ttl_ms: int) -> None:
        key = mcp_session_key(tenant, server, session_digest(session))
        await self._client.set(key, "1", px=check_ttl(ttl_ms))

    async def holds(self, tenant: str, server: str, session: str, ttl_ms: int) -> bool:
        key = mcp_session_key(tenant, server, session_digest(session))
        return bool(await self._client.pexpire(key, check_ttl(ttl_ms)))

    async def forget(self, tenant: str, server: str, session: str) -> None:
        await self._client.delete(mcp_session_key(tenant, server, session_digest(session)))

    async def claim(
        self, tenant: str, server: str, session: str, request_id: str, ttl_ms: int, token: str
    ) -> bool:
        key = claim_key(tenant, server, session, request_id)
        return bool(await self._client.set(key, token, nx=True, px=check_ttl(ttl_ms)))

    async def free(
        self, tenant: str, server: str, session: str, request_id: str, token: str
    ) -> None:
        key = claim_key(tenant, server, session, request_id)
        await self._client.eval(FREE_CLAIM, 1, key, token)

    async def holds_claiming(
        self,
        tenant: str,
        server: str,
        session: str,
        ttl_ms: int,
        request_id: str,
        claim_ms: int,
        token: str,
    ) -> tuple[bool, bool]:
        """PEXPIRE and SET NX in one pipeline (both keys in the tenant's slot, no MULTI); a
        claim made in a session not held is deleted again (a second round trip, on that
        refusal only)."""
        bound = mcp_session_key(tenant, server, session_digest(session))
        claimed = claim_key(tenant, server, session, request_id)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.pexpire(bound, check_ttl(ttl_ms))
            pipe.set(claimed, token, nx=True, px=check_ttl(claim_ms))
            held, got = await pipe.execute()
        if not held and got:
            await self._client.delete(claimed)
        return bool(held), bool(held) and bool(got)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
