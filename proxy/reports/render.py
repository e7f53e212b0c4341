"""A limit report as JSON (the admin API's shape), CSV and a text table.

Amounts are integers in their unit; JSON gives `{"units", "unit", "text"}` as the admin API
does, CSV and the table the text (`format_amount`: USD with six decimals, counted units whole).
Ratios are decimal strings. In CSV only, a text cell (tenant, value, rule, ...) that starts
with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so that a spreadsheet
never reads it as a formula (OWASP's advice on CSV injection); numbers and amounts are as they
are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from proxy.metering.pricing import format_amount
from proxy.reports.figures import LineReport, TenantReport


def amount(units: int | None, unit: str) -> dict[str, Any] | None:
    if units is None:
        return None
    return {"units": units, "unit": unit, "text": format_amount(units, unit)}


def line_json(line: LineReport) -> dict[str, Any]:
    u, s = line.unit, line.shadow
    return {
        "level": line.level,
        "value": line.value,
        "unit": u,
        "period": line.period,
        "limit": amount(line.limit, u),
        "spent_this_period": amount(line.spent_this_period, u),
        "daily_spend": {"p50": amount(line.p50, u), "p95": amount(line.p95, u)}
        | {"max": amount(line.max, u)},
        "days": line.days,
        "days_limit_hit": line.days_hit,
        "calls": line.calls,
        "denials": sum(line.denials.values()),
        "denials_by_reason": dict(line.denials),
        "degradations": sum(line.degradations.values()),
        "degradations_by_rule": dict(line.degradations),
        "reserved": amount(line.reserved, u),
        "committed": amount(line.committed, u),
        "over_reservation": _ratio(line),
        "shadow_denials": s.denials,
        "shadow_days": s.days,
        "shadow_first_day": s.first,
        "shadow_refused": amount(s.refused, u),
        "recommended_limit": amount(line.recommended.units, u),
        "recommended_rule": line.recommended.rule,
        "recommended_why": line.recommended.why,
        "forecast": amount(line.forecast, u),
    }


def _ratio(line: LineReport) -> str | None:
    return None if line.over_reservation is None else str(line.over_reservation)


def report_json(report: TenantReport) -> dict[str, Any]:
    return {
        "tenant": report.tenant,
        "mode": report.mode,
        "since": report.window.first.isoformat(),
        "until": report.window.last.isoformat(),
        "days": report.window.days,
        "lines": [line_json(line) for line in report.lines],
        "other_denials": dict(report.other_denials),
        "other_shadow_denials": report.other_shadow_denials,
        "shadow": shadow_text(report) if report.shadowed else None,
    }


COLUMNS = (
    "tenant",
    "mode",
    "level",
    "value",
    "unit",
    "period",
    "limit",
    "spent_this_period",
    "p50_daily",
    "p95_daily",
    "max_daily",
    "days",
    "days_limit_hit",
    "calls",
    "denials",
    "degradations",
    "reserved",
    "committed",
    "over_reservation",
    "shadow_denials",
    "shadow_days",
    "shadow_first_day",
    "shadow_refused",
    "recommended_limit",
    "recommended_rule",
    "forecast",
)


def row(report: TenantReport, line: LineReport) -> dict[str, str]:
    """One line's figures as text, by COLUMNS."""
    data = line_json(line)
    flat: dict[str, Any] = {"tenant": report.tenant, "mode": report.mode, **data}
    flat |= {f"{k}_daily": v for k, v in data["daily_spend"].items()}
    return {c: _text(flat[c]) for c in COLUMNS}


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value["text"])
    return "" if value is None else str(value)


TEXT_COLUMNS = frozenset(
    ("tenant", "mode", "level", "value", "unit", "period", "recommended_rule", "shadow_first_day")
)
"""The CSV columns that hold text (names, rules, a date) rather than figures."""
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(column: str, text: str) -> str:
    """`text` as a CSV cell: a text cell a spreadsheet would read as a formula quoted by `'`."""
    return f"'{text}" if column in TEXT_COLUMNS and text.startswith(_FORMULA) else text


def to_csv(reports: Sequence[TenantReport]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in reports:
        for line in r.lines:
            writer.writerow({c: _cell(c, text) for c, text in row(r, line).items()})
    return out.getvalue()


TABLE = (
    ("tenant", "tenant"),
    ("level", "level"),
    ("value", "value"),
    ("limit", "limit"),
    ("spent", "spent_this_period"),
    ("p50/day", "p50_daily"),
    ("p95/day", "p95_daily"),
    ("max/day", "max_daily"),
    ("hit", "days_limit_hit"),
    ("denied", "denials"),
    ("degraded", "degradations"),
    ("res/com", "over_reservation"),
    ("shadow", "shadow_denials"),
    ("recommended", "recommended_limit"),
    ("rule", "recommended_rule"),
    ("forecast", "forecast"),
)


def table_lines(reports: Sequence[TenantReport]) -> list[str]:
    """A header and one line per budget line, columns aligned."""
    cells = [[title for title, _ in TABLE]]
    for r in reports:
        for line in r.lines:
            flat = row(r, line)
            cells.append([flat[key] or "-" for _, key in TABLE])
    widths = [max(len(c[i]) for c in cells) for i in range(len(TABLE))]
    return ["  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip() for c in cells]


def to_table(reports: Sequence[TenantReport]) -> str:
    if not any(r.lines for r in reports):
        return "(no budget line had a call in the window)"
    parts = ["\n".join(table_lines(reports))]
    for r in reports:
        if r.shadowed:
            parts.append("\n".join(shadow_text(r)))
    return "\n\n".join(parts)


def shadow_text(report: TenantReport) -> list[str]:
    """What enforcing today's limits would have done over the window, a sentence per line."""
    w = report.window
    out = [
        f"{report.tenant} ({report.mode}): what enforcing today's limits would have done over "
        f"the last {w.days} days ({w.first.isoformat()} to {w.last.isoformat()}):"
    ]
    for line in report.lines:
        s = line.shadow
        first = f"; first on {s.first}" if s.first else ""
        out.append(
            f"- {line.level} {line.value} (limit {format_amount(line.limit, line.unit)}): "
            f"would have denied {s.denials} calls on {s.days} days{first}; spend enforcing "
            f"would have refused ≈ {format_amount(s.refused, line.unit)}"
        )
    if report.other_shadow_denials:
        out.append(f"- quotas: would have denied {report.other_shadow_denials} calls")
    if len(out) == 1:
        out.append("- nothing: no budget line had a call in the window")
    return out
