"""Periods in a tenant's local calendar: ids, starts and ends (pure; lua/common.lua matches).

The calendar is UTC + `offset_min` (the tenant's time zone offset at the moment of the call).
Period ids name the local date a period starts on, so anchors are unambiguous:

    d20261123    the local day 2026-11-23
    m20261115    the month period starting on the 15th (anchor 15); m20261101 for anchor 1

The month period containing local date D starts on the anchor day of D's month when
D >= clamp(anchor), else on that of the previous month, with clamp = min(anchor, days in that
month). It ends where the next one starts (the next anchor day after its start), at local
midnight, converted back to UTC milliseconds.

An anchor change never hands out a fresh budget mid-period: the new anchor applies from the end
of the current period (`Anchor.since_ms`), and the first period under it starts there.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

DAY_MS = 86_400_000
MINUTE_MS = 60_000
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Anchor:
    """The anchor day in effect, and from when (0: always)."""

    day: int = 1
    since_ms: int = 0


UTC_ANCHOR = Anchor()


def local_date(ms: int, offset_min: int) -> date:
    return _EPOCH + timedelta(days=(ms + offset_min * MINUTE_MS) // DAY_MS)


def utc_ms(day: date, offset_min: int) -> int:
    """The UTC instant of local midnight starting `day`."""
    return (day - _EPOCH).days * DAY_MS - offset_min * MINUTE_MS


def _clamped(anchor: int, year: int, month: int) -> date:
    return date(year, month, min(anchor, calendar.monthrange(year, month)[1]))


def _month_start(day: date, anchor: int) -> date:
    this = _clamped(anchor, day.year, day.month)
    if day >= this:
        return this
    year, month = (day.year - 1, 12) if day.month == 1 else (day.year, day.month - 1)
    return _clamped(anchor, year, month)


def _next_anchor(start: date, anchor: int) -> date:
    this = _clamped(anchor, start.year, start.month)
    if start < this:
        return this
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return _clamped(anchor, year, month)


def _text(kind: str, day: date) -> str:
    return f"{kind}{day.year:04d}{day.month:02d}{day.day:02d}"


def _parse(pid: str) -> date:
    return date(int(pid[1:5]), int(pid[5:7]), int(pid[7:9]))


def period_id(period: str, now_ms: int, offset_min: int = 0, anchor: Anchor = UTC_ANCHOR) -> str:
    """`m20261101`, `d20261123` or `-`; the same ids lua/common.lua computes."""
    if period == "none":
        return "-"
    today = local_date(now_ms, offset_min)
    if period == "day":
        return _text("d", today)
    if period != "month":
        raise ValueError(f"unknown budget period {period!r}")
    start = _month_start(today, anchor.day)
    if utc_ms(start, offset_min) < anchor.since_ms:
        start = local_date(anchor.since_ms, offset_min)
    return _text("m", start)


def period_end_ms(pid: str, offset_min: int = 0, anchor_day: int = 1) -> int:
    """First millisecond after the period `pid` (`m…` under `anchor_day`, or `d…`)."""
    start = _parse(pid)
    if pid[0] == "d":
        return utc_ms(start + timedelta(days=1), offset_min)
    return utc_ms(_next_anchor(start, anchor_day), offset_min)


def period_bound_ms(pid: str) -> int:
    """A time surely after the period `pid` ends, whatever its offset and anchor (no period
    lasts over 31 days, no offset exceeds a day): what settling, which knows neither, keeps a
    period entry for when the reserve that sets the exact expiry is gone."""
    days = 2 if pid[0] == "d" else 32
    return utc_ms(_parse(pid), 0) + days * DAY_MS
