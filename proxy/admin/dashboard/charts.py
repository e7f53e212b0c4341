"""Inline SVG: a spend bar for a budget line and a column chart for a series.

Sizes are SVG attributes and colours come from classes of the page's stylesheet: the CSP allows
no `style=` attribute. Every label and tooltip goes through `render`, so it is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.admin.dashboard.figures import Point, Standing
from proxy.admin.dashboard.markup import Html, join, render
from proxy.metering.pricing import format_amount

_BAR = """<svg class="bar{state}" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" \
aria-label="{label}"><title>{label}</title><rect class="track" width="100" height="10"/>\
<rect class="spent" width="{spent}" height="10"/>\
<rect class="reserved" x="{spent}" width="{reserved}" height="10"/></svg>"""


def _share(part: int, whole: int) -> float:
    return max(0.0, min(100.0, part * 100 / whole)) if whole > 0 else 0.0


def bar(line: Standing) -> Html:
    """Spent and reserved against limit + credit; empty without a limit."""
    if line.limit is None:
        return Html("")
    room = line.limit + line.credit
    used = line.used
    state = " over" if used >= 1 else " high" if used >= 0.8 else ""
    spent = _share(line.spent, room)
    reserved = min(100.0 - spent, _share(line.reserved, room))
    label = f"{used:.1%} of {format_amount(room, line.unit)} used"
    return render(_BAR, state=state, label=label, spent=f"{spent:.2f}", reserved=f"{reserved:.2f}")


_WIDTH, _HEIGHT, _TOP, _BOTTOM, _LEFT = 760, 170, 14, 34, 8

_CHART = """<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{label}">\
<title>{label}</title>{columns}\
<line class="axis" x1="{left}" x2="{right}" y1="{base}" y2="{base}"/>\
<text x="{left}" y="10">max {peak}</text>{ticks}</svg>"""

_COLUMN = """<rect class="col {source}" x="{x}" y="{y}" width="{w}" height="{h}" \
data-amount="{amount}"><title>{tip}</title></rect>"""

_TICK = """<text x="{x}" y="{y}" text-anchor="{anchor}">{text}</text>"""

_NOTES = {
    "ledger": "from the ledger",
    "audit": "from the audit trail",
    "partial": "at least: the audit trail does not reach the start",
    "unknown": "not known: older than the audit trail",
}


def chart(points: Sequence[Point], unit: str, title: str, every: int = 1) -> Html:
    """One column per point, scaled to the largest; `every` n-th label under the axis."""
    peak = max((p.amount or 0 for p in points), default=0)
    base = _HEIGHT - _BOTTOM
    step = (_WIDTH - 2 * _LEFT) / max(1, len(points))
    columns, ticks = [], []
    for i, p in enumerate(points):
        h = (base - _TOP) * (p.amount or 0) / peak if peak > 0 else 0.0
        x = _LEFT + i * step
        shown = "?" if p.amount is None else format_amount(p.amount, unit)
        tip = f"{p.label}: {shown} ({_NOTES[p.source]})"
        columns.append(
            render(
                _COLUMN,
                source=p.source,
                x=f"{x + step * 0.1:.1f}",
                y=f"{base - h:.1f}",
                w=f"{step * 0.8:.1f}",
                h=f"{h:.1f}",
                amount="" if p.amount is None else p.amount,
                tip=tip,
            )
        )
        last = i == len(points) - 1
        if i % every == 0 or last:
            # With narrow columns the outer labels hang inwards, so the edges do not cut them.
            anchor, at = "middle", x + step / 2
            if every > 1 and (i == 0 or last):
                anchor, at = ("start", x) if i == 0 else ("end", x + step)
            ticks.append(render(_TICK, x=f"{at:.1f}", y=base + 14, anchor=anchor, text=p.label))
    return render(
        _CHART,
        width=_WIDTH,
        height=_HEIGHT,
        label=title,
        columns=join(columns),
        left=_LEFT,
        right=_WIDTH - _LEFT,
        base=base,
        peak=format_amount(peak, unit),
        ticks=join(ticks),
    )
