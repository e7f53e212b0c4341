"""Admin tokens: from the environment, compared in constant time.

`CYCLES_ADMIN_TOKEN` holds one token, or two separated by a comma while rotating; both are full
admin. `CYCLES_ADMIN_READ_TOKEN` (optional) may only read (GET): for dashboards and billing
exports. With no token configured, every admin call is refused.

A refused call's body is never read: the answer goes, then the connection closes
(`closed_after`), rather than aiohttp reading and dropping what the client still sends and
keeping the connection. aiohttp answers `Expect: 100-continue` before any middleware runs, so
the routes get `expect_handler`: `100 Continue` only for a call the token admits, with a
Content-Length within the cap.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_urldispatcher import _default_expect_handler

from proxy.app import error_response
from proxy.core.errors import ClientError, Forbidden, PayloadTooLarge, Unauthorized
from proxy.gateway.body import too_large

Access = Literal["admin", "read"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
ACCESS = web.AppKey("access", str)


@dataclass(frozen=True, slots=True)
class Tokens:
    admin: tuple[str, ...]
    read: tuple[str, ...]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Tokens:
        env = os.environ if env is None else env
        admin = tuple(t.strip() for t in env.get("CYCLES_ADMIN_TOKEN", "").split(",") if t.strip())
        read = tuple(
            t.strip() for t in env.get("CYCLES_ADMIN_READ_TOKEN", "").split(",") if t.strip()
        )
        return cls(admin, read)

    def access(self, presented: str) -> Access | None:
        """Which access the token grants. Every configured token is compared (in constant
        time), so timing tells nothing about which one, if any, matched."""
        candidate = presented.encode()
        admin = any([hmac.compare_digest(candidate, t.encode()) for t in self.admin])
        read = any([hmac.compare_digest(candidate, t.encode()) for t in self.read])
        return "admin" if admin else "read" if read else None


def refusal(tokens: Tokens, request: web.Request) -> ClientError | None:
    """Why the bearer check refuses `request` (401 without a valid token, 403 for a read
    token's change), or None when it admits it."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    access = tokens.access(token.strip()) if scheme.lower() == "bearer" and token else None
    if access is None:
        return Unauthorized(
            "Send the admin token as 'Authorization: Bearer <token>' "
            "(CYCLES_ADMIN_TOKEN, or CYCLES_ADMIN_READ_TOKEN for reading).",
            code="invalid_admin_token",
        )
    if access == "read" and request.method not in ("GET", "HEAD"):
        return Forbidden("The read-only admin token cannot change anything.", type="read_only")
    return None


def middleware(tokens: Tokens) -> Middleware:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = refusal(tokens, request)
        if refused is None:
            return await handler(request)
        response = error_response(refused, request.path)
        return await closed_after(request, response) if request.can_read_body else response

    return authenticate


def expect_handler(tokens: Tokens, cap: int) -> ExpectHandler:
    """The bearer routes' answer to `Expect: 100-continue`. aiohttp answers it before any
    middleware runs, inviting the body of any caller; this invites it only from a caller the
    bearer check admits and when its Content-Length is within `cap`, and otherwise answers the
    refusal at once and closes the connection, so the body is never sent, nor read."""

    async def expect(request: web.Request) -> web.StreamResponse | None:
        refused = refusal(tokens, request) or declared_too_large(request, cap)
        if refused is None:
            await continue_body(request)
            return None
        return await closed_after(request, error_response(refused, request.path))

    return expect


async def closed_after(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """`response` sent, then the connection closed, for a request whose body is not read: not
    aiohttp's lingering close, which reads and drops what the client still sends (for up to
    the runner's `lingering_time`, as fast as it comes) and keeps the connection if that is
    all. (What the client still sends is unread: its kernel may see a reset once the answer
    is out.)"""
    response.force_close()  # the answer says Connection: close
    with suppress(ConnectionError):  # the client left: nothing to send, only to close
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()  # the transport sends what was written, then closes
    return response


def expecting(routes: Iterable[web.RouteDef], expect: ExpectHandler) -> list[web.RouteDef]:
    """`routes`, each answering `Expect: 100-continue` with `expect`."""
    return [
        web.RouteDef(r.method, r.path, r.handler, {**r.kwargs, "expect_handler": expect})
        for r in routes
    ]


def declared_too_large(request: web.Request, cap: int) -> PayloadTooLarge | None:
    """413 for a body whose Content-Length is over `cap`, else None."""
    if request.content_length is not None and request.content_length > cap:
        return too_large(cap)
    return None


async def continue_body(request: web.Request) -> None:
    """aiohttp's own answer to an Expect header: `100 Continue` (417 for another value)."""
    await _default_expect_handler(request)
