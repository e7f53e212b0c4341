"""Admin tokens: from the environment, compared in constant time.

`CYCLES_ADMIN_TOKEN` holds one token, or two separated by a comma while rotating; both are full
admin. `CYCLES_ADMIN_READ_TOKEN` (optional) may only read (GET): for dashboards and billing
exports. With no token configured, every admin call is refused.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Middleware

from proxy.core.errors import Forbidden, Unauthorized

Access = Literal["admin", "read"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
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


def middleware(tokens: Tokens) -> Middleware:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        access = tokens.access(token.strip()) if scheme.lower() == "bearer" and token else None
        if access is None:
            raise Unauthorized(
                "Send the admin token as 'Authorization: Bearer <token>' "
                "(CYCLES_ADMIN_TOKEN, or CYCLES_ADMIN_READ_TOKEN for reading).",
                code="invalid_admin_token",
            )
        if access == "read" and request.method not in ("GET", "HEAD"):
            raise Forbidden("The read-only admin token cannot change anything.", type="read_only")
        return await handler(request)

    return authenticate
