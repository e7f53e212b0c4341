"""The dashboard's routes, and the middleware that keeps the two ways in apart.

`authenticate` replaces the admin API's bearer middleware on the admin application: a request
the router matched to a dashboard route (named `dashboard.*`) skips the bearer check, and every
dashboard handler is wrapped by `_page`, which checks the session cookie, answers errors as
HTML and sets the security headers; every other request, /admin/v1/* included, goes to the
bearer check as before and never looks at a cookie. The choice is made on the route matched,
not on the path's text, so no cookie reaches an API handler and no bearer token opens a page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web import RouteDef

from proxy.admin import report_routes, shared
from proxy.admin.auth import (
    ExpectHandler,
    Handler,
    Tokens,
    closed_after,
    continue_body,
    declared_too_large,
    middleware,
)
from proxy.admin.dashboard import figures, pages, report_page, session
from proxy.admin.dashboard.markup import Html, new_nonce, page, redirect, respond, secure
from proxy.admin.dashboard.tenant_page import tenant
from proxy.core.errors import BadRequest, ClientError, LedgerError
from proxy.core.types import SCOPE_VALUE as VALUE
from proxy.reports.read import ascii_number
from proxy.store.tenants import TenantRecord, TenantStore

log = logging.getLogger("cycles.dashboard")

PREFIX = "dashboard."
PAGE_SIZE, MAX_PAGE_SIZE = 50, 200
SEARCH_SCAN = 5000
"""A search looks through at most this many tenant records for one page of matches."""
LOGIN_MAX_BYTES = 4096
"""The login form's body at most: one token field."""


@dataclass(frozen=True, slots=True)
class Gate:
    sessions: session.Sessions
    throttle: session.LoginThrottle


GATE = web.AppKey("dashboard_gate", Gate)


@dataclass(frozen=True, slots=True)
class Context:
    gate: Gate
    session: session.Session | None
    nonce: str


Page = Callable[[web.Request, Context], Awaitable[web.StreamResponse]]


def html(ctx: Context, title: str, body: Html, status: int = 200) -> web.Response:
    access = ctx.session.access if ctx.session is not None else None
    return respond(page(title, body, ctx.nonce, access), status)


def authenticate(tokens: Tokens) -> Middleware:
    """Bearer tokens for every route but the dashboard's, which check sessions (`_page`)."""
    bearer = middleware(tokens)

    @web.middleware
    async def route(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (request.match_info.route.name or "").startswith(PREFIX):
            return await handler(request)
        return await bearer(request, handler)

    return route


def _route(method: str, path: str, handler: Page, name: str, *, public: bool = False) -> RouteDef:
    """A dashboard route named `dashboard.<name>`: `handler` as a page (`_page`), an `Expect:
    100-continue` answered by `_expect`."""
    return web.route(
        method, path, _page(handler, public), name=PREFIX + name, expect_handler=_expect(public)
    )


def _context(request: web.Request) -> Context:
    gate = request.app[GATE]
    cookie = request.cookies.get(session.COOKIE)
    return Context(gate, gate.sessions.verify(cookie) if cookie else None, new_nonce())


def _page(handler: Page, public: bool) -> Handler:
    """A dashboard route: its session (required unless `public`), HTML errors, and the
    security headers with this response's nonce."""

    async def run(request: web.Request) -> web.StreamResponse:
        ctx = _context(request)
        response = await _guarded(request, handler, ctx, public)
        secure(response, ctx.nonce)
        if request.can_read_body:  # only the login form's body is read, and not always
            return await closed_after(request, response)
        return response

    return run


def _expect(public: bool) -> ExpectHandler:
    """A dashboard route's answer to `Expect: 100-continue`. aiohttp's own comes before any
    handler, inviting the body of any caller; this invites it only when the page would run (a
    session, unless `public`) and its Content-Length is within LOGIN_MAX_BYTES (the only body
    the dashboard reads is the login form), and otherwise answers the refusal at once and
    closes the connection, the body never sent, nor read."""

    async def expect(request: web.Request) -> web.StreamResponse | None:
        ctx = _context(request)
        refused = _unauthenticated(request, ctx, public)
        too_large = declared_too_large(request, LOGIN_MAX_BYTES)
        if refused is None and too_large is not None:
            refused = html(ctx, "Refused", pages.failure(413, too_large.message), 413)
        if refused is None:
            await continue_body(request)
            return None
        secure(refused, ctx.nonce)
        return await closed_after(request, refused)

    return expect


def _unauthenticated(request: web.Request, ctx: Context, public: bool) -> web.Response | None:
    """The answer to a request for a page that needs a session it does not have, else None."""
    if ctx.session is not None or public:
        return None
    if request.method in ("GET", "HEAD"):
        return redirect("/dashboard/login")
    return html(ctx, "Log in", pages.failure(401, "Log in first."), 401)


async def _guarded(
    request: web.Request, handler: Page, ctx: Context, public: bool
) -> web.StreamResponse:
    refused = _unauthenticated(request, ctx, public)
    if refused is not None:
        return refused
    try:
        return await handler(request, ctx)
    except ClientError as exc:  # a 408 or 413 leaves the body unread: `_page` closes
        return html(ctx, "Error", pages.failure(exc.status, str(exc)), exc.status)
    except LedgerError as exc:
        log.warning("dashboard: the store failed: %s", exc)
        message = "The ledger cannot be read right now; try again shortly."
        return html(ctx, "Unavailable", pages.failure(503, message), 503)
    except Exception:
        log.exception("dashboard: unhandled error on %s %s", request.method, request.path)
        return html(ctx, "Error", pages.failure(500, "The dashboard failed; see the log."), 500)


# -- login and logout ------------------------------------------------------------------------


def _refused(ctx: Context, problem: str) -> web.Response:
    return html(ctx, "Refused", pages.failure(403, problem), 403)


async def login_form(request: web.Request, ctx: Context) -> web.StreamResponse:
    if ctx.session is not None:
        return redirect("/dashboard")
    return html(ctx, "Log in", pages.login(hours=session.SESSION_SECONDS // 3600))


async def login(request: web.Request, ctx: Context) -> web.StreamResponse:
    if (problem := session.origin_problem(request)) is not None:
        return _refused(ctx, problem)
    address = request.remote or "-"
    if ctx.gate.throttle.blocked(address, time.monotonic()):
        return _throttled(ctx)
    token = await _form_token(request)
    # Again once the form is in: logins from one address that all waited for their forms
    # passed the check above together. Nothing awaits from here to a failure being counted,
    # so each login sees those before it, and an address gets no guess past its limit.
    now = time.monotonic()
    if ctx.gate.throttle.blocked(address, now):
        return _throttled(ctx)
    cookie = ctx.gate.sessions.issue(token.strip()) if isinstance(token, str) else None
    if cookie is None:
        ctx.gate.throttle.failed(address, now)
        body = pages.login("That is not an admin token.", session.SESSION_SECONDS // 3600)
        return html(ctx, "Log in", body, 401)
    response = redirect("/dashboard")
    session.set_cookie(response, request, cookie, ctx.gate.sessions.lifetime_s)
    return response


def _throttled(ctx: Context) -> web.Response:
    body = pages.login("Too many failed logins from this address; wait a minute.")
    return html(ctx, "Log in", body, 429)


async def _form_token(request: web.Request) -> str | None:
    """The login form's `token`. The form is read before the token can be checked, so it is
    small (LOGIN_MAX_BYTES, else 413) and read as the proxy port reads a body (within
    `timeouts.read_request`, else 408); browsers send it urlencoded, anything else is 400."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise BadRequest("Send the login form as application/x-www-form-urlencoded.")
    raw = await shared.read_body(request, LOGIN_MAX_BYTES)
    fields = dict(parse_qsl(raw.decode(errors="replace")))
    return fields.get("token")


async def logout(request: web.Request, ctx: Context) -> web.StreamResponse:
    if (problem := session.origin_problem(request)) is not None:
        return _refused(ctx, problem)
    response = redirect("/dashboard/login")
    session.clear_cookie(response, request)
    return response


# -- pages -----------------------------------------------------------------------------------


def _listing_query(request: web.Request) -> tuple[str, str, str, str | None, int]:
    query = request.query
    q = query.get("q", "").strip()[:128]
    sort = query.get("sort", "id")
    sort = sort if sort in pages.SORTS else "id"
    direction = "desc" if query.get("dir") == "desc" else "asc"
    after = query.get("after") or None
    if after is not None and not VALUE.fullmatch(after):
        after = None
    asked = ascii_number(query.get("limit", ""))
    limit = PAGE_SIZE if asked is None else min(max(asked, 1), MAX_PAGE_SIZE)
    return q, sort, direction, after, limit


async def index(request: web.Request, ctx: Context) -> web.StreamResponse:
    q, sort, direction, after, limit = _listing_query(request)
    records, cursor = await find_tenants(shared.tenants(request), q, after, limit)
    rt = shared.runtime(request)
    rows = await figures.tenant_rows(shared.stores(request), rt.policy, records)
    ask = pages.Listing(q, sort, direction, after, limit, cursor)
    body = pages.tenants(pages.sort_rows(rows, sort, direction), ask)
    return html(ctx, "Tenants", body)


async def find_tenants(
    store: TenantStore, q: str, after: str | None, limit: int
) -> tuple[list[TenantRecord], str | None]:
    """Up to `limit` tenants after the cursor whose id, plan or status contains `q`, and the
    cursor of the next page (None at the end). A search reads at most SEARCH_SCAN records."""
    needle, cursor, scanned = q.lower(), after, 0
    found: list[TenantRecord] = []
    batch_size = limit if not needle else max(limit, 200)
    while scanned < SEARCH_SCAN:
        batch = await store.list_tenants(after=cursor, limit=batch_size)
        for record in batch:
            cursor, scanned = record.id, scanned + 1
            if needle in f"{record.id} {record.plan} {record.status}".lower():
                found.append(record)
                if len(found) == limit:
                    return found, cursor
        if len(batch) < batch_size:
            return found, None
    return found, cursor


async def tenant_detail(request: web.Request, ctx: Context) -> web.StreamResponse:
    tenant_id = request.match_info["tenant"].lower()
    if not VALUE.fullmatch(tenant_id):
        return html(ctx, "Not found", pages.failure(404, "No such tenant."), 404)
    record = await shared.tenants(request).get_tenant(tenant_id)
    if record is None:
        message = f"No tenant {tenant_id!r} in the store."
        return html(ctx, "Not found", pages.failure(404, message), 404)
    view = await figures.tenant_view(
        shared.stores(request), shared.runtime(request).policy, record, int(time.time() * 1000)
    )
    return html(ctx, record.id, tenant(view))


async def reports(request: web.Request, ctx: Context) -> web.StreamResponse:
    """The admin API's limit reports (GET /admin/v1/reports/limits) as a page."""
    found, cursor = await report_routes.read(request)
    query = request.query
    body = report_page.reports(found, query.get("tenant", ""), query.get("since", "30d"), cursor)
    return html(ctx, "Limit reports", body)


async def not_found(request: web.Request, ctx: Context) -> web.StreamResponse:
    return html(ctx, "Not found", pages.failure(404, "No such dashboard page."), 404)


def add_routes(app: web.Application, tokens: Tokens) -> None:
    """The dashboard's routes, named `dashboard.*` (which `authenticate` relies on)."""
    app[GATE] = Gate(session.Sessions(tokens), session.LoginThrottle())
    app.add_routes(
        [
            _route("GET", "/dashboard", index, "index"),
            _route("GET", "/dashboard/login", login_form, "form", public=True),
            _route("POST", "/dashboard/login", login, "login", public=True),
            _route("POST", "/dashboard/logout", logout, "logout", public=True),
            _route("GET", "/dashboard/tenants/{tenant}", tenant_detail, "tenant"),
            _route("GET", "/dashboard/reports", reports, "reports"),
            _route("GET", "/dashboard/{tail:.*}", not_found, "not_found"),
        ]
    )
