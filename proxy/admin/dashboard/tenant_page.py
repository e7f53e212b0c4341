"""A tenant's page: its record, its budget lines as a scope tree (action units' lines, RISK_POINTS
or the operator's EMAILS, TOOL_CALLS, as counts), spend over time, tool calls by server and tool,
recent denials and degradations, and the tail of its audit trail."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from proxy.admin.dashboard.charts import bar, chart
from proxy.admin.dashboard.figures import TOP_USERS, Series, Standing, TenantView
from proxy.admin.dashboard.markup import Html, join, render
from proxy.admin.dashboard.scan import TOOL_PREFIX, ToolTally
from proxy.core.types import is_action_unit
from proxy.metering.pricing import format_amount
from proxy.policy.runtime import DegradeRule, Plan
from proxy.store.tenants import AuditEntry

_RULE = re.compile(r"^degrade\[(\d+)\]$")


def when(ms: int, timezone: str) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S")


def _amount(units: int | None, unit: str) -> str:
    return "—" if units is None else format_amount(units, unit)


_LINE = """<tr class="{kind}" data-line="{level}|{value}|{unit}|{period}">
<td class="{depth}">{name}</td><td>{unit}</td><td class="mono">{period}</td>
<td class="num" data-role="limit">{limit}</td><td class="num" data-role="spent">{spent}</td>
<td class="num" data-role="reserved">{reserved}</td><td class="num">{credit}</td>
<td class="num" data-role="remaining">{remaining}</td><td>{bar}</td></tr>"""

_LINES = """<table class="lines"><thead><tr><th>Scope</th><th>Unit</th><th>Period</th>
<th class="num">Limit</th><th class="num">Spent</th><th class="num">Reserved</th>
<th class="num">Credit</th><th class="num">Remaining</th><th></th></tr></thead>
<tbody>{rows}</tbody></table>"""


def _line(s: Standing, depth: int) -> Html:
    period = s.period_id + ("" if s.current else " (previous)")
    return render(
        _LINE,
        kind="" if s.current else "past",
        level=s.level,
        value=s.value,
        unit=s.unit,
        period=period,
        depth=f"depth-{depth}",
        name=s.level if s.level == "tenant" else s.value,
        limit=_amount(s.limit, s.unit),
        spent=format_amount(s.spent, s.unit),
        reserved=format_amount(s.reserved, s.unit),
        credit=format_amount(s.credit, s.unit),
        remaining=_amount(s.remaining, s.unit),
        bar=bar(s) if s.current else Html(""),
    )


def scope_tree(lines: Sequence[Standing], empty: str) -> Html:
    """The tenant's own lines first, then each level's values under the level's name."""
    if not lines:
        return render('<p class="hint">{empty}</p>', empty=empty)
    rows, level = [], None
    for s in lines:
        if s.level != "tenant" and s.level != level:
            rows.append(render('<tr class="group"><td colspan="9">{lv}</td></tr>', lv=s.level))
        level = s.level
        rows.append(_line(s, 0 if s.level == "tenant" else 1))
    return render(_LINES, rows=join(rows))


def _series(s: Series) -> Html:
    return render(
        '<h3>{unit}</h3><p class="hint">Per day, the last {n} days</p>{days}'
        '<p class="hint">Per month period</p>{months}',
        unit=s.unit,
        n=len(s.days),
        days=chart(s.days, s.unit, f"{s.unit} spent per day", every=5),
        months=chart(s.months, s.unit, f"{s.unit} spent per month"),
    )


def describe_rule(name: str, plan: Plan | None) -> str:
    found = _RULE.match(name)
    index = int(found.group(1)) if found else -1
    rules = plan.degrade if plan is not None else ()
    rule: DegradeRule | None = next((r for r in rules if r.index == index), None)
    if rule is None:
        return ""
    sets = [f"model → {rule.model}"] if rule.model else []
    if rule.max_tokens is not None:
        sets.append(f"max_tokens → {rule.max_tokens}")
    if rule.fit_floor is not None:
        sets.append(f"fit (at least {rule.fit_floor} tokens)")
    if rule.hide_tools:
        sets.append(f"hide {', '.join(rule.hide_tools)}")
    condition = rule.kind.replace("_", " ")
    if rule.level:
        condition += f" on {rule.level}"
    return f"{condition}: {', '.join(sets)}"


def _fields(entry: AuditEntry, skip: Iterable[str] = ()) -> Html:
    items = [
        render("<li><b>{k}</b> {v}</li>", k=k, v=v)
        for k, v in entry.fields.items()
        if k not in skip
    ]
    return render('<ul class="kv">{items}</ul>', items=join(items))


def _table(head: Sequence[str], rows: list[Html], empty: str, name: str) -> Html:
    if not rows:
        return render('<p class="hint" data-table="{name}">{empty}</p>', name=name, empty=empty)
    heads = join(render("<th>{h}</th>", h=h) for h in head)
    return render(
        '<table data-table="{name}"><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>',
        name=name,
        heads=heads,
        rows=join(rows),
    )


def _denial(e: AuditEntry, tz: str) -> Html:
    f = e.fields
    decision = "DENY" if f.get("decision") == "DENY" else "would DENY (shadow)"
    return render(
        '<tr><td>{at}</td><td>{decision}</td><td>{reason}</td><td class="mono">{scope}</td>'
        '<td class="num" data-role="count">{count}</td><td class="mono">{run}</td></tr>',
        at=when(e.at_ms, tz),
        decision=decision,
        reason=f.get("reason", ""),
        scope=f.get("scope", ""),
        count=f.get("count", "1"),
        run=f.get("run", ""),
    )


def _degradation(e: AuditEntry, tz: str, plan: Plan | None) -> Html:
    f = e.fields
    rule = f.get("rule", "")
    shadow = "" if f.get("decision") == "ALLOW_WITH_CAPS" else " (shadow: would)"
    return render(
        '<tr><td>{at}</td><td class="mono" data-role="rule">{rule}{shadow}</td><td>{what}</td>'
        '<td class="mono">{amounts}</td><td class="mono">{run}</td></tr>',
        at=when(e.at_ms, tz),
        rule=rule,
        shadow=shadow,
        what=describe_rule(rule, plan),
        amounts=f.get("amounts", ""),
        run=f.get("run", ""),
    )


def _tool(action: str, tally: ToolTally) -> Html:
    server, _, name = action.removeprefix(TOOL_PREFIX).partition("/")
    charged = ", ".join(format_amount(v, u) for u, v in sorted(tally.charged.items()))
    return render(
        '<tr data-tool="{action}"><td class="mono">{server}</td><td class="mono">{name}</td>'
        '<td class="num" data-role="reservations">{reservations}</td>'
        '<td class="num" data-role="denials">{denials}</td>'
        '<td class="num" data-role="charged">{charged}</td></tr>',
        action=action,
        server=server,
        name=name or "other",
        reservations=tally.reservations,
        denials=tally.denials,
        charged=charged or "—",
    )


def _tools(tallies: Mapping[str, ToolTally]) -> Html:
    return _table(
        ("Server", "Tool", "Reservations", "Denials", "Charged"),
        [_tool(a, t) for a, t in sorted(tallies.items())],
        "No tool calls in the audit trail read.",
        "tools",
    )


def _audit(e: AuditEntry, tz: str) -> Html:
    return render(
        "<tr><td>{at}</td><td>{kind}</td><td>{fields}</td></tr>",
        at=when(e.at_ms, tz),
        kind=e.kind,
        fields=_fields(e),
    )


_PAGE = """<p><a href="/dashboard">← Tenants</a></p>
<h1>{id} <span class="badge {status}">{status}</span>{shadow}</h1>
<dl class="facts card">
<div><dt>Plan</dt><dd>{plan}</dd></div><div><dt>Time zone</dt><dd>{timezone}</dd></div>
<div><dt>Today</dt><dd class="mono">{day}</dd></div>
<div><dt>Month period</dt><dd class="mono">{month} (anchor day {anchor})</dd></div>
<div><dt>Created</dt><dd>{created}</dd></div><div><dt>Record version</dt><dd>{version}</dd></div>
</dl>
<h2>Budgets</h2>
{calls}
<h2>Action budgets</h2>
{actions}
<h2>Top end users</h2>
<p class="hint">The end users who spent most this period, per end-user budget ({top} at most).</p>
{users}
<h2>Spend over time</h2>
<p class="hint">Dark columns come from the ledger's own period lines, blue ones from what
commits charged in the audit trail, light ones are lower bounds (the trail starts inside
them). {reach}</p>
{series}
<h2>Tool calls</h2>
<p class="hint">MCP tool calls in the audit trail read, by server and tool: reservations made,
calls denied by a budget or quota, and what their commits charged.</p>
{tools}
<h2>Recent denials</h2>
{denials}
<h2>Recent degradations</h2>
{degradations}
<h2>Audit trail, newest first</h2>
{audit}"""


def tenant(view: TenantView) -> Html:
    r, tz, h = view.record, view.record.timezone, view.history
    calls = [s for s in view.lines if not is_action_unit(s.unit)]
    actions = [s for s in view.lines if is_action_unit(s.unit)]
    reach = f"The trail was read back to {when(h.reached_ms, tz)}"
    reach += "." if h.complete else " (the read stopped there: older history is not shown)."
    shadow = Html(' <span class="badge shadow">shadow</span>') if r.mode == "shadow" else ""
    return render(
        _PAGE,
        id=r.id,
        status=r.status,
        shadow=shadow,
        plan=r.plan,
        timezone=tz,
        day=view.clock.day,
        month=view.clock.month,
        anchor=r.anchor_day,
        created=when(r.created_ms, tz),
        version=r.version,
        calls=scope_tree(calls, "No budget lines in the ledger yet."),
        actions=scope_tree(actions, "No action budget lines in the ledger yet."),
        top=TOP_USERS,
        users=scope_tree(view.users, "No end user has spent anything this period."),
        reach=reach,
        series=join(_series(s) for s in view.series)
        or Html('<p class="hint">The plan has no budgets.</p>'),
        tools=_tools(h.tools.shown()),
        denials=_table(
            ("When", "Decision", "Reason", "Scope or quota", "Count", "Run"),
            [_denial(e, tz) for e in h.denials],
            "No denials in the audit trail read.",
            "denials",
        ),
        degradations=_table(
            ("When", "Rule", "What it does", "Reserved", "Run"),
            [_degradation(e, tz, view.plan) for e in h.degradations],
            "No degradations in the audit trail read.",
            "degradations",
        ),
        audit=_table(
            (f"When ({tz})", "Kind", "Fields"),
            [_audit(e, tz) for e in h.tail],
            "The audit trail is empty.",
            "audit",
        ),
    )
