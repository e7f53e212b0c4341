"""Client retries: a budgeted call that carries an idempotency key runs, and is charged, once.

A call with `Idempotency-Key` (or `X-Cycles-Idempotency-Key`) claims (tenant, sha256(key)) after
identification and before anything is reserved; a caller whose API key pins levels (a key per
agent) claims in a namespace of those pins, (tenant, pins, sha256(key)), so one agent's keys can
neither block another's nor be answered from them. What a later call with the same key gets:

    the first call is still running          409 conflict / idempotency_in_flight, Retry-After
    the first call answered 2xx in one body  that answer again (status, body, relayed headers,
    of at most MAX_STORED_BYTES              plus `X-Cycles-Replayed: true`); nothing is reserved
    the key came with another request        422 idempotency_key_reused
    the first call failed (any 4xx/5xx, from the proxy or the provider), was a stream, or its
    answer was larger than MAX_STORED_BYTES  nothing: the key was released, the call runs (and
                                             is charged) again

"Another request" means another path, scope path or JSON body (compared by hash, key order and
spacing ignored). Answers are kept for WINDOW_S and a claim expires with the reservation cap (see
store/replays.py), so an instance that dies mid-call holds a key no longer than that. A call
without a key touches no store at all. A store that cannot be reached is admission's to decide
(admission.py): 503, or under `fail_mode: open` the call goes on `unprotected`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Coroutine, Mapping
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from proxy.budget.scopes import Scope, path_of
from proxy.core.errors import (
    BadRequest,
    Conflict,
    IdempotencyKeyReused,
    LedgerUnavailable,
    ServiceUnavailable,
)
from proxy.store.replays import Record, ReplaysFull, ReplayStore

log = logging.getLogger(__name__)

HEADERS = ("Idempotency-Key", "X-Cycles-Idempotency-Key")
MAX_KEY_CHARS = 255
MAX_STORED_BYTES = 1024 * 1024
"""A larger answer is not kept: a repeat runs and is charged again."""
RETRY_AFTER_S = 1
REPLAYED = "X-Cycles-Replayed"
_NOT_KEPT = frozenset({"content-length", "transfer-encoding", "date", "server", "connection"})


class Claim:
    """A call's hold on its key; a call without a key holds nothing and costs nothing.

    Used as `async with claim:` around the call: an error before the call is handed over
    (`run`) releases the key. After that, the task that runs the call keeps or releases it,
    even when the client has gone (that is the retry this exists for)."""

    def __init__(self, store: ReplayStore | None, tenant: str, digest: str, request_hash: str):
        self._store, self._tenant, self._digest = store, tenant, digest
        self._hash = request_hash
        self._handed = False

    async def __aenter__(self) -> Claim:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None and not self._handed:
            await self._release()

    def run(
        self, work: Coroutine[Any, Any, web.StreamResponse]
    ) -> Coroutine[Any, Any, web.StreamResponse]:
        """`work`, then keep its answer or release the key."""
        self._handed = True
        return work if self._store is None else self._recorded(work)

    async def _recorded(self, work: Awaitable[web.StreamResponse]) -> web.StreamResponse:
        try:
            response = await work
        except BaseException:
            await self._release()
            raise
        record = _keepable(response, self._hash)
        try:
            if record is None:
                await self._release()
            elif self._store is not None:
                await self._store.keep(self._tenant, self._digest, record)
        except LedgerUnavailable as exc:
            log.warning("could not keep the answer for an idempotency key (%s)", exc)
        return response

    async def _release(self) -> None:
        if self._store is None:
            return
        try:
            await self._store.release(self._tenant, self._digest)
        except LedgerUnavailable as exc:
            log.warning("could not release an idempotency key (%s)", exc)


async def begin(
    store: ReplayStore,
    request: web.Request,
    scope: Scope,
    raw: bytes,
    *,
    body_key: str | None = None,
) -> Claim | web.Response:
    """Claim the call's idempotency key (`body_key`, its body's, or the one its headers carry:
    they must agree), or answer from what the key holds. LedgerUnavailable: the store cannot be
    reached (admission decides)."""
    key = _key(request.headers, body_key)
    if key is None:
        return unprotected(scope)
    digest = _digest(key, scope)
    request_hash = _request_hash(request, scope, raw)
    try:
        held = await store.claim(scope.tenant, digest, Record(request_hash))
    except ReplaysFull:
        raise ServiceUnavailable(
            "Calls in flight hold as many idempotency keys as this proxy keeps for them (this "
            "tenant's, or every tenant's; memory:// store); nothing was forwarded or charged. "
            "Retry once some have finished, or send fewer keyed calls at once.",
            retry_after=1,
            code="idempotency_store_full",
        ) from None
    if held is None:
        return Claim(store, scope.tenant, digest, request_hash)
    return _answer(held, request_hash, scope.tenant)


def unprotected(scope: Scope) -> Claim:
    """The claim of a call without a key, or one that goes on without the store."""
    return Claim(None, scope.tenant, "", "")


def _key(headers: Mapping[str, str], body_key: str | None) -> str | None:
    """The idempotency key: the body's, or the headers' (they must agree)."""
    header = key_of(headers)
    if header is not None and body_key is not None and header != body_key:
        raise BadRequest(
            "The Idempotency-Key header and the body's idempotency_key differ; send one.",
            code="invalid_idempotency_key",
        )
    return body_key or header


def key_of(headers: Mapping[str, str]) -> str | None:
    """The client's idempotency key, from either header (they must agree)."""
    found = {value for name in HEADERS if (value := headers.get(name)) is not None}
    if not found:
        return None
    if len(found) > 1:
        raise BadRequest(
            f"{HEADERS[0]} and {HEADERS[1]} differ; send one of them.",
            code="invalid_idempotency_key",
        )
    key = found.pop()
    if not 0 < len(key) <= MAX_KEY_CHARS:
        raise BadRequest(
            f"The idempotency key must be 1 to {MAX_KEY_CHARS} characters; a UUID works.",
            code="invalid_idempotency_key",
        )
    return key


def _digest(key: str, scope: Scope) -> str:
    """Where the key is claimed in the tenant's store: the key's sha256, after the sha256 of the
    caller's pinned levels when its API key pins any (the two forms cannot meet)."""
    own = hashlib.sha256(key.encode()).hexdigest()
    if not scope.pins:
        return own
    return f"{hashlib.sha256(path_of(scope.pins).encode()).hexdigest()}.{own}"


def _request_hash(request: web.Request, scope: Scope, raw: bytes) -> str:
    """The path, the scope and the body as JSON (key order and spacing do not count: a client
    that serialises its retry afresh sends the same request)."""
    head = f"{request.method} {request.path}\n{scope.path()}\n".encode()
    try:
        body = orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        # Not JSON, or nested deeper than orjson writes: hashed as sent (prepare refuses it).
        body = raw
    return hashlib.sha256(head + body).hexdigest()


def _answer(held: Record, request_hash: str, tenant: str) -> web.Response:
    if held.request_hash != request_hash:
        raise IdempotencyKeyReused(
            "This idempotency key was already used with a different request (path, scope "
            "headers or body). Use a new key for a new request.",
            code="idempotency_key_reused",
        )
    if held.status == 0:
        conflict = Conflict(
            "A call with this idempotency key is still running. Retry after it finishes to get "
            "its answer.",
            code="idempotency_in_flight",
        )
        conflict.headers = {"Retry-After": str(RETRY_AFTER_S)}
        raise conflict
    log.info("call tenant=%s replayed status=%d: nothing charged", tenant, held.status)
    headers = CIMultiDict(held.headers)
    headers[REPLAYED] = "true"
    return web.Response(status=held.status, body=held.body, headers=headers)


def _keepable(response: web.StreamResponse, request_hash: str) -> Record | None:
    """What to replay, or None: a failure, a stream, an empty or oversized answer."""
    if not isinstance(response, web.Response) or not 200 <= response.status < 300:
        return None
    body = response.body
    if not isinstance(body, bytes) or not body:
        return None
    if len(body) > MAX_STORED_BYTES:
        log.info("answer of %d bytes is too large to keep for replay", len(body))
        return None
    headers = tuple((k, v) for k, v in response.headers.items() if k.lower() not in _NOT_KEPT)
    return Record(request_hash, response.status, headers, body)
