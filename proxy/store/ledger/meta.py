"""A tenant's `:meta` hash as the ledger reads it. The tenant store (store/tenants/) writes it;
the reserve script (and memory.py, step for step) reads the status, version, overrides, anchor
and held periods from it in the same atomic step as the budgets, so a request racing a
suspension or a plan change is ordered before or after it. Fields (all strings):

    status          active | suspended | closed
    plan            the assigned plan
    mode            enforce | shadow, or '' (inherit the policy's)
    anchor_day      the anchor in effect (1-31) and `anchor_from_ms`, when it took effect
    pending_anchor  a new anchor day ('' for none), in effect from `pending_from_ms` (the end of
                    the period current when it was set)
    timezone        IANA name
    hold_day        across a time-zone change, the day and month periods current when it was
    hold_month      made, `<period id>:<ms>`: current until then (their end in the old zone),
                    and no later period of that kind has an earlier id (calendar.py); '' or
                    absent: none
    alerts          alert thresholds in basis points replacing the plan's, `5000,8000`; 'none'
                    for no threshold alerts; '' or absent: inherit
    overrides       `tenant=5000000000,run=200000000` or '-'
    version         bumped by every change to the record
    day_offset_min  the utc offset (minutes) of the tenant's time zone at its last reserve (which
                    writes it when it changes): settling scripts, which are not given the zone,
                    place their writes to the day's rollups by it (rollups.py); absent: 0
    created_ms      when it was created; a meta without it is not a tenant (only a status or a
                    clock offset written by tests)
    clock_offset_ms added to the clock every script of this tenant sees. Only tests write it
                    (tests/hooks_support.py): no interface of the store does. The scripts keep
                    reading it because their clock is Redis TIME, read inside the script, so
                    that instances with skewed clocks agree; a clock passed in by the caller
                    would give that up.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from proxy.store.ledger.calendar import Anchor, Calendar, Hold

AGGREGATE = "q|agg|"
"""Ledger field prefix of the per-minute denial counters (`q|agg|<minute>|<reason>|<scope>`,
then `|<action>` when the call names one)."""
GENERATION = "q|gen|"
"""Ledger field prefix of the RESET_SPENT generations (`q|gen|resets`, `q|gen|reset|<prefix>`,
`q|gen|exp|<reservation>`; lua/common.lua late_charge): bookkeeping, not quota counters."""


def encode_overrides(overrides: Mapping[str, int]) -> str:
    return ",".join([f"{level}={limit:d}" for level, limit in sorted(overrides.items())]) or "-"


def decode_overrides(text: str) -> dict[str, int]:
    if text in ("-", ""):
        return {}
    return {level: int(limit) for level, limit in (p.split("=") for p in text.split(","))}


def sorted_amounts(amounts: Mapping[str, int]) -> str:
    """Amounts as the audit records them (units sorted, like lua's encode_amounts)."""
    return encode_overrides(amounts)


def calendar_at(meta: Mapping[str, str], now_ms: int, offset_min: int) -> Calendar:
    """The tenant's calendar at `now_ms` in a zone `offset_min` from UTC: its anchor then, and
    the periods held across a time-zone change (`hold_day`, `hold_month`)."""
    holds: tuple[tuple[str, Hold], ...] = ()
    if meta.get("hold_day") or meta.get("hold_month"):
        holds = tuple(
            (kind, hold)
            for kind in ("day", "month")
            if (hold := Hold.decode(meta.get(f"hold_{kind}", ""))) is not None
        )
    return _calendar(offset_min, anchor_at(meta, now_ms), holds)


def anchor_at(meta: Mapping[str, str], now_ms: int) -> Anchor:
    """The anchor in effect at `now_ms` (a pending one once its switch time has come)."""
    pending = meta.get("pending_anchor", "")
    if pending and now_ms >= int(meta["pending_from_ms"]):
        return _anchor(int(pending), int(meta["pending_from_ms"]))
    return _anchor(int(meta.get("anchor_day", "1")), int(meta.get("anchor_from_ms", "0")))


# One instance per value, made once: a reserve reads its tenant's calendar on every call, and
# the period caches (calendar.py) find an instance they were given before by identity.
_anchor = functools.lru_cache(maxsize=1024)(Anchor)
_calendar = functools.lru_cache(maxsize=1024)(Calendar)
