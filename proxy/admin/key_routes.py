"""Admin endpoints for API keys: create (shown once; optionally pinning levels,
store/api_keys/records.py), list (prefix only), revoke, rotate."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.admin import views
from proxy.admin.api import idempotent, issued, json_body, ok, record_of
from proxy.admin.shared import keys
from proxy.core.errors import BadRequest, Conflict, CyclesError, NotFound
from proxy.store.api_keys import PINNABLE, KeyRecord


def key_json(key: KeyRecord) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "prefix": key.prefix,
        "tenant": key.tenant,
        **{level: getattr(key, level) for level in PINNABLE},
        "state": key.state,
        "expires_ms": key.expires_ms or None,
        "created_ms": key.created_ms,
    }


@idempotent
async def create_key(request: web.Request) -> web.StreamResponse:
    record = await record_of(request)
    if record.status == "closed":
        raise Conflict(f"Tenant {record.id!r} is closed.")
    pins = _pins(await json_body(request))
    plain, key = await keys(request).create(record.id, **pins)
    return _issued(plain, key)


def _pins(body: dict[str, Any]) -> dict[str, str | None]:
    """The levels the new key pins; any other field is refused, since a misspelt level would
    otherwise issue a key that pins nothing."""
    unknown = sorted(set(body) - set(PINNABLE))
    if unknown:
        raise BadRequest(
            f"Unknown field {unknown[0]!r}: a key may pin {', '.join(PINNABLE)} (its tenant is "
            "the one in the path).",
            param=unknown[0],
        )
    return {
        level: views.scope_value(value, level) for level, value in body.items() if value is not None
    }


async def list_keys(request: web.Request) -> web.StreamResponse:
    record = await record_of(request)
    listed = await keys(request).list(record.id)
    return ok({"tenant": record.id, "data": [key_json(k) for k in listed]})


@idempotent
async def revoke_key(request: web.Request) -> web.StreamResponse:
    record = await record_of(request)
    try:
        await keys(request).revoke(record.id, request.match_info["key"])
    except CyclesError as exc:
        raise NotFound(str(exc), code="key_not_found") from None
    return ok({"revoked": request.match_info["key"]})


@idempotent
async def rotate_key(request: web.Request) -> web.StreamResponse:
    record = await record_of(request)
    body = await json_body(request)
    grace = body.get("grace_seconds", 3600)
    if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= 30 * 86400:
        raise BadRequest("'grace_seconds' must be 0 to 2592000.", param="grace_seconds")
    try:
        plain, key = await keys(request).rotate(record.id, request.match_info["key"], grace * 1000)
    except CyclesError as exc:
        raise NotFound(str(exc), code="key_not_found") from None
    return _issued(plain, key)


def _issued(plain: str, key: KeyRecord) -> web.Response:
    """The new key, shown this once; a replay names it without the key."""
    answer = {**key_json(key), "key": plain}
    return issued(answer, views.shown_once(answer, key.tenant))
