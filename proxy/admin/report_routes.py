"""GET /admin/v1/reports/limits: limit reports (README "Reports"), as `cycles-proxy report`.

`?tenant=T` reports one tenant (404 when the store has none); without it a page of tenants in
id order (`limit`, at most MAX_LIMIT; `after`, the `next` cursor of the page before), since a
report reads three times per tenant. `since` is the window (`30d`); `format=csv` answers CSV.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.admin import views
from proxy.admin.api import ok
from proxy.admin.shared import ledger, runtime, tenants
from proxy.core.errors import BadRequest, NotFound
from proxy.reports.figures import TenantReport
from proxy.reports.read import ascii_number, read_reports, window_days
from proxy.reports.render import report_json, to_csv

DEFAULT_LIMIT, MAX_LIMIT = 20, 100


def _limit(query: Any) -> int:
    limit = ascii_number(query.get("limit", str(DEFAULT_LIMIT)))
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"'limit' must be a number from 1 to {MAX_LIMIT}.", param="limit")
    return limit


def _format(query: Any) -> str:
    form = str(query.get("format", "json"))
    if form not in ("json", "csv"):
        raise BadRequest("'format' must be json or csv.", param="format")
    return form


async def read(request: web.Request) -> tuple[list[TenantReport], str | None]:
    """The reports the query asks for, and the next page's cursor (shared with the dashboard)."""
    query = request.query
    days = window_days(query.get("since", "30d"))
    limit = _limit(query)
    only = views.scope_value(query["tenant"], "tenant") if query.get("tenant") else None
    after = views.scope_value(query["after"], "after") if query.get("after") else None
    reports, cursor = await read_reports(
        ledger(request),
        tenants(request),
        days=days,
        default_mode=runtime(request).policy.mode,
        only=only,
        after=after,
        limit=limit,
    )
    if only is not None and not reports:
        raise NotFound(f"No tenant {only!r} in the store.", code="tenant_not_found")
    return reports, cursor


async def limits(request: web.Request) -> web.StreamResponse:
    form = _format(request.query)
    reports, cursor = await read(request)
    if form == "csv":
        return web.Response(text=to_csv(reports), content_type="text/csv")
    return ok({"data": [report_json(r) for r in reports], "next": cursor})
