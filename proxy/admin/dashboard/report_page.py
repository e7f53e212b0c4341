"""The limit reports page (/dashboard/reports): the admin API's report, a table per tenant,
and for a tenant in shadow what enforcing its limits would have done (README "Reports")."""

from __future__ import annotations

from collections.abc import Sequence

from proxy.admin.dashboard.markup import Html, href, join, render
from proxy.reports.figures import TenantReport
from proxy.reports.render import row, shadow_text

COLUMNS = (
    ("level", "Level"),
    ("value", "Value"),
    ("limit", "Limit"),
    ("spent_this_period", "Spent this period"),
    ("recommended_limit", "Recommended"),
    ("recommended_rule", "Rule"),
    ("forecast", "Forecast"),
    ("p50_daily", "p50 / day"),
    ("p95_daily", "p95 / day"),
    ("max_daily", "max / day"),
    ("days_limit_hit", "Days hit"),
    ("denials", "Denials"),
    ("degradations", "Degraded"),
    ("shadow_denials", "Shadow denials"),
    ("over_reservation", "Reserved / committed"),
)

_TENANT = """<section class="card" data-report="{tenant}">
<h2><a href="{link}">{tenant}</a> <span class="badge {mode}">{mode}</span></h2>
<p class="hint">{first} to {last} ({days} days).{other}</p>
<div class="scroll"><table class="lines report" data-table="report">
<thead><tr>{headers}</tr></thead><tbody>{rows}</tbody></table></div>{shadow}</section>"""

_PAGE = """<h1>Limit reports</h1>
<form class="search" method="get" action="/dashboard/reports">
<input type="search" name="tenant" value="{tenant}" placeholder="Tenant id" aria-label="Tenant">
<input type="text" name="since" value="{since}" aria-label="Window, in days" size="6">
<button type="submit">Report</button>
</form>
<p class="hint">Per budget line over the window: daily spend percentiles (nearest rank, days
without spend counted), the days its limit was hit, denials and degradations, reserved over
committed, and a recommended limit with the rule that produced it.</p>
{tenants}
<nav class="pager">{next}</nav>"""


def _rows(report: TenantReport) -> Html:
    rows = join(
        render(
            '<tr data-line="{line}">{cells}</tr>',
            line=f"{line.level}|{line.value}|{line.unit}|{line.period}",
            cells=join(
                render('<td data-key="{k}">{v}</td>', k=key, v=row(report, line)[key] or "—")
                for key, _ in COLUMNS
            ),
        )
        for line in report.lines
    )
    return rows or Html(f'<tr><td colspan="{len(COLUMNS)}">No calls in the window.</td></tr>')


def _tenant(report: TenantReport) -> Html:
    w = report.window
    other = sum(report.other_denials.values())
    shadow = Html("")
    if report.shadowed:
        head, *lines = shadow_text(report)
        items = join(render("<li>{t}</li>", t=t.removeprefix("- ")) for t in lines)
        shadow = render('<div data-role="shadow"><h3>{h}</h3><ul>{i}</ul></div>', h=head, i=items)
    return render(
        _TENANT,
        tenant=report.tenant,
        link=href(f"/dashboard/tenants/{report.tenant}"),
        mode=report.mode,
        first=w.first.isoformat(),
        last=w.last.isoformat(),
        days=w.days,
        other=f" Denials by quotas or status: {other}." if other else "",
        headers=join(render("<th>{t}</th>", t=title) for _, title in COLUMNS),
        rows=_rows(report),
        shadow=shadow,
    )


def reports(found: Sequence[TenantReport], tenant: str, since: str, cursor: str | None) -> Html:
    following = Html("")
    if cursor:
        link = href("/dashboard/reports", since=since, after=cursor)
        following = render('<a href="{link}" rel="next">Next page →</a>', link=link)
    return render(
        _PAGE,
        tenant=tenant,
        since=since,
        tenants=join(_tenant(r) for r in found) or Html("<p>No tenants.</p>"),
        next=following,
    )
