"""The login page, the tenants table and error pages (the tenant page is tenant_page.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.admin.dashboard.charts import bar
from proxy.admin.dashboard.figures import Standing, TenantRow
from proxy.admin.dashboard.markup import Html, href, join, render
from proxy.metering.pricing import format_amount

_LOGIN = """<div class="login card">
<h1>Dashboard login</h1>
<form method="post" action="/dashboard/login" autocomplete="off">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" required autofocus>
{error}
<button type="submit">Log in</button>
</form>
<p class="hint">CYCLES_ADMIN_TOKEN, or CYCLES_ADMIN_READ_TOKEN to look without changing
anything. The session lasts {hours} hours.</p>
</div>"""


def login(error: str = "", hours: int = 8) -> Html:
    shown = render('<p class="error" role="alert">{e}</p>', e=error) if error else Html("")
    return render(_LOGIN, error=shown, hours=hours)


def failure(status: int, message: str) -> Html:
    return render(
        '<div class="card"><h1>{status}</h1><p class="error">{message}</p>'
        '<p><a href="/dashboard">Back to the tenants</a></p></div>',
        status=status,
        message=message,
    )


SORTS = ("id", "plan", "status", "spend", "denials", "degradations")
NUMERIC = frozenset({"spend", "denials", "degradations"})


@dataclass(frozen=True, slots=True)
class Listing:
    """What the tenants page was asked for, and the cursor of the next page."""

    q: str
    sort: str
    direction: str
    after: str | None
    limit: int
    next: str | None


def sort_rows(rows: list[TenantRow], key: str, direction: str) -> list[TenantRow]:
    def value(row: TenantRow) -> tuple[float | str, str]:
        return (sort_value(row, key), row.record.id)

    return sorted(rows, key=value, reverse=direction == "desc")


def sort_value(row: TenantRow, key: str) -> float | str:
    main = row.lines[0] if row.lines else None
    if key == "spend":
        return main.used if main is not None else -1.0
    if key == "denials":
        return row.today.denials
    if key == "degradations":
        return row.today.degradations
    return str(getattr(row.record, key))


def _header(key: str, title: str, ask: Listing) -> Html:
    current = ask.sort == key
    if current:
        flip = "asc" if ask.direction == "desc" else "desc"
    else:
        flip = "desc" if key in NUMERIC else "asc"
    link = href("/dashboard", q=ask.q, sort=key, dir=flip, after=ask.after, limit=ask.limit)
    sort = ""
    if current:
        sort = ' aria-sort="{}"'.format("descending" if ask.direction == "desc" else "ascending")
    kind = "num" if key in NUMERIC else "text"
    return render(
        '<th data-key="{key}" data-type="{kind}"{sort}><a href="{link}">{title}</a></th>',
        key=key,
        kind=kind,
        sort=Html(sort),
        link=link,
        title=title,
    )


def _count(n: int, shadow: int, truncated: bool) -> Html:
    text = f"≥ {n}" if truncated else str(n)
    extra = f" (+{shadow} shadow)" if shadow else ""
    return render("{text}<small>{extra}</small>", text=text, extra=extra)


def spend_cell(line: Standing | None, extra: Sequence[Standing] = ()) -> Html:
    if line is None or line.limit is None:
        return Html('<span class="hint">no tenant budget</span>')
    more = join(
        render(
            "<small>{s} of {l}</small>",
            s=format_amount(x.spent, x.unit),
            l=format_amount(x.limit or 0, x.unit),
        )
        for x in extra
    )
    return render(
        '<div class="spend">{bar}<span data-role="spent">{spent}</span>'
        "<small>of {limit} · {period}</small>{more}</div>",
        bar=bar(line),
        spent=format_amount(line.spent, line.unit),
        limit=format_amount(line.limit, line.unit),
        period=line.period_id,
        more=more,
    )


_ROW = """<tr data-tenant="{id}" data-search="{search}">
<td data-key="id" data-sort="{id}"><a href="{link}">{id}</a></td>
<td data-key="plan" data-sort="{plan}">{plan}</td>
<td data-key="status" data-sort="{status}"><span class="badge {status}">{status}</span>{mode}</td>
<td data-key="spend" data-sort="{used}">{spend}</td>
<td class="num" data-key="denials" data-sort="{denials}">{denial_text}</td>
<td class="num" data-key="degradations" data-sort="{degradations}">{degradation_text}</td>
</tr>"""


def _row(row: TenantRow) -> Html:
    r, c = row.record, row.today
    mode = Html(' <span class="badge shadow">shadow</span>') if r.mode == "shadow" else Html("")
    main = row.lines[0] if row.lines else None
    return render(
        _ROW,
        id=r.id,
        search=f"{r.id} {r.plan} {r.status}".lower(),
        link=href(f"/dashboard/tenants/{r.id}"),
        plan=r.plan,
        status=r.status,
        mode=mode,
        used=f"{sort_value(row, 'spend'):.6f}",
        spend=spend_cell(main, row.lines[1:]),
        denials=c.denials,
        denial_text=_count(c.denials, c.shadow_denials, c.truncated),
        degradations=c.degradations,
        degradation_text=_count(c.degradations, c.shadow_degradations, c.truncated),
    )


_TENANTS = """<h1>Tenants</h1>
<form class="search" method="get" action="/dashboard" role="search">
<input type="search" name="q" value="{q}" placeholder="Search tenant, plan or status"
 aria-label="Search tenants" data-filter="tenants">
<input type="hidden" name="sort" value="{sort}"><input type="hidden" name="dir" value="{dir}">
<button type="submit">Search</button>
</form>
<p class="hint"><span data-shown>{count}</span> tenants on this page{scope}. Spend is the
tenant-level budget in its current period; denials and degradations are today's, in each
tenant's time zone, from its audit trail. Sorting applies to this page (pages go by tenant id).
</p>
<table id="tenants" class="sortable">
<thead><tr>{headers}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
<nav class="pager">{first}{next}</nav>"""


def tenants(rows: list[TenantRow], ask: Listing) -> Html:
    headers = join(
        _header(key, title, ask)
        for key, title in zip(
            SORTS,
            ("Tenant", "Plan", "Status", "Spend", "Denials today", "Degradations today"),
            strict=True,
        )
    )
    first = Html("")
    if ask.after:
        link = href("/dashboard", q=ask.q, sort=ask.sort, dir=ask.direction, limit=ask.limit)
        first = render('<a href="{link}">← First page</a>', link=link)
    following = Html("")
    if ask.next:
        link = href(
            "/dashboard",
            q=ask.q,
            sort=ask.sort,
            dir=ask.direction,
            after=ask.next,
            limit=ask.limit,
        )
        following = render('<a href="{link}" rel="next">Next page →</a>', link=link)
    scope = f" matching “{ask.q}”" if ask.q else ""
    return render(
        _TENANTS,
        q=ask.q,
        sort=ask.sort,
        dir=ask.direction,
        count=len(rows),
        scope=scope,
        headers=headers,
        rows=join(_row(r) for r in rows) or Html('<tr><td colspan="6">No tenants.</td></tr>'),
        first=first,
        next=following,
    )
