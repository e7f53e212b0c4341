"""Who is calling: the first step of every request.

`identity: header` (sidecar) trusts `X-Cycles-Tenant` from the app in the same pod.
`identity: api_key` (gateway) maps `Authorization: Bearer ck-…` (or `x-api-key: ck-…`, the
anthropic SDK's header) to its tenant; scope headers may
narrow the call further but never contradict the key (403), and nothing is reserved before the
caller is known. The key is checked first: a valid key is served whatever other clients of the
same address did. A failure consults the brake (store/api_keys/failures.py): a client address
(core/peers.py: the peer, or whom a trusted proxy forwarded for; an IPv6 one by its network) or key
prefix that keeps failing gets 429 instead of 401, and a braked address's keys that the cache does
not hold are looked up in the store at the brake's pace (one a second), the rest 429 without a
lookup.

Keys are never logged here; the redaction filter in proxy/gateway/logs.py is the second line. A
key store that cannot answer is admission's to decide (admission.py: 503, whatever fail_mode).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

from aiohttp import web

from proxy.budget import scopes
from proxy.core import peers
from proxy.core.errors import Forbidden, LedgerError, TooManyFailedAuth, Unauthorized
from proxy.policy.runtime import Policy
from proxy.store.api_keys import PLAIN, KeyRecord, Keys, digest
from proxy.store.tenants import TenantStore

log = logging.getLogger(__name__)

SEND = "Send your cycles-proxy API key as `Authorization: Bearer ck-…`."

RejectHook = Callable[[str | None, str], Awaitable[None]]
"""Called with (tenant if known, reason) when identification refuses a call."""


@dataclass(slots=True)
class Callers:
    """What identification needs besides the policy: the tenants' API keys (gateway mode) and
    the hook that audits a refusal."""

    keys: Keys
    on_rejected: RejectHook | None = None


async def identify(request: web.Request, policy: Policy, callers: Callers) -> scopes.Scope:
    """The validated scope of a call (budgeted or not), by the policy's identity mode."""
    if policy.identity == "header":
        return scopes.from_headers(request.headers)
    key = await _authenticate(request, policy, callers)
    return await _scope_for(key, request.headers, callers)


async def _authenticate(request: web.Request, policy: Policy, callers: Callers) -> KeyRecord:
    keys = callers.keys
    plain, reason = _credential(request.headers)
    client = _client(request, policy)
    key, hold = (None, 0.0) if plain is None else await _lookup(callers, plain, client)
    if reason is None:
        reason = _unusable(key, keys.now_ms())
    if reason is None and key is not None:
        return key
    wait = keys.failures.failed(client, plain)
    if wait:
        await asyncio.sleep(keys.failures.lookups.left(hold))
        await _too_many(callers, wait)
    reason = reason or "unknown_api_key"
    await _rejected(callers, key.tenant if key else None, reason)
    raise _unauthorized(reason)


def _client(request: web.Request, policy: Policy) -> str:
    """Whom failures are counted under: the client's address, an IPv6 one by its network."""
    address = peers.client_address(
        request.remote, request.headers, policy.trusted_proxies, policy.forwarded_header
    )
    return peers.counted_as(address, policy.client_ipv6_prefix)


async def _too_many(callers: Callers, wait: int) -> NoReturn:
    await _rejected(callers, None, "too_many_failed_auth")
    raise TooManyFailedAuth(wait)


def _credential(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """`Authorization: Bearer ck-…`, or `x-api-key: ck-…` as the anthropic SDK sends it, or
    `api-key: ck-…` as the Azure OpenAI client does."""
    header = next((h for h in ("x-api-key", "api-key") if h in headers), None)
    if "Authorization" not in headers and header is not None:
        token = headers[header].strip()
        return (token, None) if PLAIN.fullmatch(token) else (None, "malformed_api_key")
    return _bearer(headers.get("Authorization"))


def _bearer(header: str | None) -> tuple[str | None, str | None]:
    """(the key, None) or (None, why not)."""
    if header is None:
        return None, "missing_api_key"
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not PLAIN.fullmatch(token):
        return None, "malformed_api_key"
    return token, None


async def _lookup(callers: Callers, plain: str, client: str) -> tuple[KeyRecord | None, float]:
    """The key's record from the cache, else from the store at the brake's pace for `client`;
    and until when a failure must be held before it is answered (Brake.take_lookup)."""
    keys = callers.keys
    sha = digest(plain)
    hit, record = keys.cached(sha)
    if hit:
        return record, 0.0
    hold = keys.failures.take_lookup(client)
    if hold is None:
        await _too_many(callers, keys.failures.refused(client, plain))
    return await keys.lookup(sha), hold or 0.0


def _unusable(key: KeyRecord | None, now_ms: int) -> str | None:
    if key is None:
        return "unknown_api_key"
    if key.state == "revoked":
        return "revoked_api_key"
    if not key.usable(now_ms):
        return "expired_api_key"
    return None


def _unauthorized(reason: str) -> Unauthorized:
    if reason == "missing_api_key":
        message = f"No API key was sent. {SEND}"
    elif reason == "malformed_api_key":
        message = f"The Authorization header does not carry a cycles-proxy API key. {SEND}"
    else:
        message = (
            "The API key is unknown, revoked or expired. Ask your operator for a valid key, "
            "and send it as `Authorization: Bearer ck-…`."
        )
    error = Unauthorized(message, code="invalid_api_key")
    error.headers = {"WWW-Authenticate": 'Bearer realm="cycles-proxy"'}
    return error


async def _scope_for(key: KeyRecord, headers: Mapping[str, str], callers: Callers) -> scopes.Scope:
    """The key's tenant and pinned levels, plus whatever other scope headers the call named."""
    values: dict[str, str] = {}
    for level, header in scopes.HEADERS.items():
        raw = headers.get(header)
        if raw is not None:
            values[level] = scopes.check_value(header, raw)
    for level, bound in {"tenant": key.tenant, **key.pins}.items():
        named = values.setdefault(level, bound)
        if named != bound:
            reason = "tenant_mismatch" if level == "tenant" else "scope_mismatch"
            await _rejected(callers, key.tenant, reason)
            raise Forbidden(
                f"Header {scopes.HEADERS[level]} says {named!r} but this API key is for "
                f"{level} {bound!r}. Omit the header (the key decides) or send {bound!r}.",
                type=reason,
            )
    return scopes.Scope(tenant=key.tenant, values=values, pins=key.pins)


async def _rejected(callers: Callers, tenant: str | None, reason: str) -> None:
    """Tell the audit hook, if any; its failure never changes the answer."""
    if callers.on_rejected is None:
        return
    try:
        await callers.on_rejected(tenant, reason)
    except Exception:
        log.exception("on_rejected hook failed (tenant=%s reason=%s)", tenant, reason)


async def note_rejection(store: TenantStore, tenant: str | None, reason: str) -> None:
    """A call refused at identification goes into the audit of the tenant its key names."""
    if tenant is None:
        return
    try:
        await store.note_rejection(tenant, reason)
    except LedgerError as exc:
        log.warning("could not audit a rejected call for tenant=%s (%s)", tenant, exc)
