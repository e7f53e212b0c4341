"""Periods in a tenant's local calendar: ids, starts and ends (pure; lua/common.lua matches).

The calendar is UTC + `offset_min` (the tenant's time zone offset at the moment of the call).
Period ids name the local date a period starts on, so anchors are unambiguous:

    d20261123    the local day 2026-11-23
    m20261115    the month period starting on the 15th (anchor 15); m20261101 for anchor 1

The month period containing local date D starts on the anchor day of D's month when
D >= clamp(anchor), else on that of the previous month, with clamp = min(anchor, days in that
month). It ends where the next one starts (the next anchor day after its start), at local
midnight, converted back to UTC milliseconds.

One rule for every change of calendar: a change never shortens or restarts the current period.

- An anchor change applies from the end of the current period (`Anchor.since_ms`); the first
  period under the new anchor starts there.
- A time-zone change applies from the end of the current period of each kind: the day and the
  month current when it was made are held (`Hold`) until they end in the old zone. After that
  the new zone's calendar applies, except that it never goes back to an earlier period id than
  the held one: when the new zone is further west, its calendar reaches the held period's date
  again, and that period simply goes on until it ends in the new zone (a longer period, never a
  fresh one).
"""

from __future__ import annotations

import calendar
import functools
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


@dataclass(frozen=True, slots=True)
class Hold:
    """A period kept across a time-zone change: `pid` is current until `until_ms` (its end in
    the zone it started in), and no later call gets an earlier id of its kind."""

    pid: str
    until_ms: int

    def encode(self) -> str:
        """The `:meta` form, `<pid>:<until ms>` (tenants.py `hold_day`, `hold_month`)."""
        return f"{self.pid}:{self.until_ms:d}"

    @classmethod
    def decode(cls, text: str) -> Hold | None:
        if not text:
            return None
        pid, until = text.split(":")
        return cls(pid, int(until))


@dataclass(frozen=True, slots=True)
class Calendar:
    """A tenant's calendar as the scripts compute it: UTC + `offset_min`, the anchor in effect,
    and the periods held across a time-zone change (by kind: `day`, `month`)."""

    offset_min: int = 0
    anchor: Anchor = UTC_ANCHOR
    holds: tuple[tuple[str, Hold], ...] = ()

    def hold(self, period: str) -> Hold | None:
        for kind, held in self.holds:
            if kind == period:
                return held
        return None

    def period_id(self, period: str, now_ms: int) -> str:
        """The period current at `now_ms` (lua/common.lua period_id)."""
        if not self.holds:  # the usual case: no time-zone change is being carried over
            return period_id(period, now_ms, self.offset_min, self.anchor)
        held = self.hold(period)
        if held is not None and now_ms < held.until_ms:
            return held.pid
        pid = period_id(period, now_ms, self.offset_min, self.anchor)
        return held.pid if held is not None and pid < held.pid else pid

    def period_end(self, pid: str) -> int:
        """When the period `pid` ends (lua/common.lua period_end): a held period at the later
        of its end in the old zone and in this one."""
        end = period_end_ms(pid, self.offset_min, self.anchor.day)
        if not self.holds:
            return end
        held = self.hold("day" if pid[0] == "d" else "month")
        return max(end, held.until_ms) if held is not None and held.pid == pid else end


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
    return _period_on(period, (now_ms + offset_min * MINUTE_MS) // DAY_MS, offset_min, anchor)


@functools.lru_cache(maxsize=4096)
def _period_on(period: str, local_day: int, offset_min: int, anchor: Anchor) -> str:
    """period_id on the local day `local_day` (days since 1970-01-01): the same all day long,
    so computed once a day per calendar, not on every reserve and settle."""
    today = _EPOCH + timedelta(days=local_day)
    if period == "day":
        return _text("d", today)
    if period != "month":
        raise ValueError(f"unknown budget period {period!r}")
    start = _month_start(today, anchor.day)
    if utc_ms(start, offset_min) < anchor.since_ms:
        start = local_date(anchor.since_ms, offset_min)
    return _text("m", start)


@functools.lru_cache(maxsize=4096)
def period_end_ms(pid: str, offset_min: int = 0, anchor_day: int = 1) -> int:
    """First millisecond after the period `pid` (`m…` under `anchor_day`, or `d…`)."""
    start = _parse(pid)
    if pid[0] == "d":
        return utc_ms(start + timedelta(days=1), offset_min)
    return utc_ms(_next_anchor(start, anchor_day), offset_min)


@functools.lru_cache(maxsize=4096)
def period_bound_ms(pid: str) -> int:
    """A time surely after the period `pid` ends, whatever its offset and anchor (no period
    lasts over 31 days, no offset exceeds a day): what settling, which knows neither, keeps a
    period entry for when the reserve that sets the exact expiry is gone."""
    days = 2 if pid[0] == "d" else 32
    return utc_ms(_parse(pid), 0) + days * DAY_MS
