"""The admin application, served on its own listener (default 127.0.0.1:8081).

It uses the proxy application's resources (its stores, the tenants' API keys, the policy in
force, the metrics), handed over explicitly as `app.Shared` once the proxy app has started, but
none of its routes: the admin API is not reachable through the proxy port, and the proxy port
not through it. The one thing both serve is /metrics: here with an admin or read token, there
only in sidecar mode (app.py).
"""

from __future__ import annotations

from aiohttp import web

from proxy.admin import api, auth, dashboard, key_routes, report_routes, user_routes
from proxy.admin.auth import Tokens
from proxy.admin.shared import SHARED
from proxy.app import Shared, errors
from proxy.gateway.metrics import METRICS, metrics_endpoint


def build_admin_app(shared: Shared, *, tokens: Tokens | None = None) -> web.Application:
    """The admin API and dashboard on what the proxy app shares (`app.shared(proxy_app)`): its
    stores, API keys, policy and metrics."""
    tokens = tokens or Tokens.from_env()
    app = web.Application(
        middlewares=[errors, dashboard.authenticate(tokens)], client_max_size=api.MAX_BODY_BYTES
    )
    app[SHARED] = shared
    app[METRICS] = shared.metrics
    routes = [
        web.post("/admin/v1/tenants", api.create_tenant),
        web.get("/admin/v1/tenants", api.list_tenants),
        web.get("/admin/v1/tenants/{tenant}", api.get_tenant),
        web.patch("/admin/v1/tenants/{tenant}", api.update_tenant),
        web.post("/admin/v1/tenants/{tenant}/suspend", api.suspend),
        web.post("/admin/v1/tenants/{tenant}/reactivate", api.reactivate),
        web.post("/admin/v1/tenants/{tenant}/close", api.close),
        web.get("/admin/v1/tenants/{tenant}/balances", api.balances),
        web.post("/admin/v1/tenants/{tenant}/adjustments", api.adjust),
        web.post("/admin/v1/tenants/{tenant}/reset", api.reset),
        web.get("/admin/v1/tenants/{tenant}/audit", api.audit),
        web.get("/admin/v1/tenants/{tenant}/users", user_routes.list_users),
        web.get("/admin/v1/tenants/{tenant}/users/{user}", user_routes.get_user),
        web.post("/admin/v1/tenants/{tenant}/keys", key_routes.create_key),
        web.get("/admin/v1/tenants/{tenant}/keys", key_routes.list_keys),
        web.post("/admin/v1/tenants/{tenant}/keys/{key}/revoke", key_routes.revoke_key),
        web.post("/admin/v1/tenants/{tenant}/keys/{key}/rotate", key_routes.rotate_key),
        web.get("/admin/v1/reports/limits", report_routes.limits),
        # The proxy's metrics, for an admin or read token (they name every tenant).
        web.get("/metrics", metrics_endpoint),
    ]
    expect = auth.expect_handler(tokens, api.MAX_BODY_BYTES)
    app.add_routes(auth.expecting(routes, expect))
    dashboard.add_routes(app, tokens)
    # Last, so it matches only what nothing else does: aiohttp's own 404 and 405 would answer
    # `Expect: 100-continue` without the token check.
    app.router.add_route("*", "/{tail:.*}", no_route, expect_handler=expect)
    return app


async def no_route(request: web.Request) -> web.StreamResponse:
    """No admin route has this path and method (the `errors` middleware answers 404)."""
    raise web.HTTPNotFound()
