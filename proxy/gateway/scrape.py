"""Who may scrape the metrics listener (`--metrics-listen`), whose /metrics names every tenant
and what each spent.

`CYCLES_METRICS_TOKEN` holds one token, or two separated by a comma while rotating. With one
set, /metrics there answers only `Authorization: Bearer <token>` (compared in constant time;
otherwise 401); /healthz stays open for probes. A gateway refuses to serve metrics on a
non-loopback address without a token unless told explicitly (settings.validate): every pod of a
cluster can reach a pod's IP. The admin listener's /metrics takes the admin tokens instead.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware

from proxy.core.errors import Unauthorized

ENV = "CYCLES_METRICS_TOKEN"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def tokens_from_env(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if env is None else env
    return tuple(t.strip() for t in env.get(ENV, "").split(",") if t.strip())


def allowed(tokens: tuple[str, ...], authorization: str) -> bool:
    """Whether the header carries one of the tokens; every one is compared, in constant time."""
    scheme, _, presented = authorization.partition(" ")
    candidate = presented.strip().encode()
    matches = [hmac.compare_digest(candidate, t.encode()) for t in tokens]
    return scheme.lower() == "bearer" and bool(candidate) and any(matches)


def middleware(tokens: tuple[str, ...]) -> Middleware:
    """/metrics only for a bearer of one of `tokens`."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/metrics" and not allowed(
            tokens, request.headers.get("Authorization", "")
        ):
            refused = Unauthorized(
                f"Send the metrics token as 'Authorization: Bearer <token>' ({ENV}): these "
                "metrics name every tenant and what it spent.",
                code="invalid_metrics_token",
            )
            refused.headers = {"WWW-Authenticate": 'Bearer realm="cycles-proxy metrics"'}
            raise refused
        return await handler(request)

    return authenticate
