"""The ledger's history: daily rollups per tenant and budget line, written in the same atomic
step as the counters they summarise (lua/rollup.lua on Redis, rollups_memory.py on memory://)
and read back as `DayRollup`s (results.py) by `Ledger.rollups`.

A day is the tenant's local day: the utc offset its last reserve was made in (`:meta`
`day_offset_min`, meta.py) places every write, a settle's and an expiry's too. Each day is one
hash of fields `<level>|<value>|<unit>|<period>|<kind>` (lua/rollup.lua lists the kinds); a
row is (level, value, unit, period), runs and end users summed in one row per level under
value `*`, and `-|-|-|-` the tenant-wide row. A day is kept `history_retention_ms` after it
ends (ReservationSettings), and read only until then, so both stores answer alike whenever
their expiry actually runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, timedelta

from proxy.store.ledger.results import DayRollup

DAY_MS = 86_400_000
MINUTE_MS = 60_000
LEVEL_ORDER = ("-", "tenant", "workspace", "app", "workflow", "agent", "toolset", "run", "user")
"""How rows of a day are sorted: the tenant-wide row first, then the scope levels outermost
first (policy/runtime.py LEVELS)."""
STAR = frozenset({"run", "user"})
"""Levels whose values are unbounded: one row per level, value `*`."""
BOUNDED = frozenset({"workspace", "app", "workflow", "agent", "toolset"})
"""Levels whose values come from a call's headers: the first `history_values_per_level` of
each in a day keep their own row (marked by fields `#|<level>|<value>`, counted in
`#|<level>`), the others are summed in the level's `*` row (lua/rollup.lua roll_fold)."""
SAFE = 2**53 - 1
"""Where a day's sums saturate (the most a Lua double holds exactly): a figure there reads
"at least"; a rollup never fails the write it records."""
PERIODS = {"d": "day", "m": "month", "-": "none"}
"""A period id's first letter -> the period (calendar.py ids)."""
TENANT_ROW = "-|-|-|-"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EPOCH = date(1970, 1, 1)
_SUMS = {
    "spent": "spent",
    "peak": "reserved_peak",
    "calls": "calls",
    "rsum": "reserved_sum",
    "csum": "committed_sum",
    "shadow": "shadow_denials",
    "vpeak": "value_peak",
    "limit": "limit",
}


def row_of(prefix: str) -> str:
    """The row a ledger field prefix `<level>|<value>|<unit>|<period id>` writes to."""
    level, value, unit, pid = prefix.split("|")
    return f"{level}|{'*' if level in STAR else value}|{unit}|{PERIODS[pid[:1]]}"


def local_day(now_ms: int, offset_min: int) -> int:
    """The local day (days since 1970-01-01) at `now_ms` in a zone `offset_min` from UTC."""
    return (now_ms + offset_min * MINUTE_MS) // DAY_MS


def day_end_ms(day: int, offset_min: int) -> int:
    """The first millisecond (UTC) after local day `day`."""
    return (day + 1) * DAY_MS - offset_min * MINUTE_MS


def day_name(day: int) -> str:
    """`20261205`: how a day is named in its key (lua/rollup.lua roll_key)."""
    return (_EPOCH + timedelta(days=day)).strftime("%Y%m%d")


def _parse_day(what: str, text: str) -> int:
    try:
        if not _DAY.match(text):
            raise ValueError(text)
        return (date.fromisoformat(text) - _EPOCH).days
    except ValueError:
        raise ValueError(f"rollups: {what} must be a day as YYYY-MM-DD, got {text!r}") from None


def days_to_read(
    since: str, until: str | None, now_ms: int, offset_min: int, retention_ms: int
) -> range:
    """The days of since..until (until: the tenant's today; a `since` after it reads nothing)
    not yet past the retention."""
    first, today = _parse_day("since", since), local_day(now_ms, offset_min)
    last = today if until is None else _parse_day("until", until)
    if until is not None and last < first:
        raise ValueError(f"rollups: until ({until}) is before since ({since})")
    last = min(last, today + 1)  # no day after tomorrow has rollups (an offset may yet move)
    kept = (now_ms - retention_ms + offset_min * MINUTE_MS) // DAY_MS
    return range(max(first, kept), last + 1)


def _text(raw: str | bytes) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def day_rows(day: int, fields: Mapping[str, str] | Mapping[bytes, bytes]) -> list[DayRollup]:
    """The rows of one day's hash, sorted by (level order, value, unit, period)."""
    rows: dict[tuple[str, ...], dict[str, int]] = {}
    named: dict[tuple[str, ...], tuple[dict[str, int], dict[str, int]]] = {}
    for raw_name, raw_value in fields.items():
        if _text(raw_name).startswith("#|"):
            continue
        level, value, unit, period, kind = _text(raw_name).split("|", 4)
        key, n = (level, value, unit, period), int(_text(raw_value))
        sums = rows.setdefault(key, {})
        denials, degradations = named.setdefault(key, ({}, {}))
        head, _, rest = kind.partition("|")
        if head == "deny":
            denials[rest] = n
        elif head == "degr":
            degradations[rest] = n
        elif head in _SUMS:
            sums[_SUMS[head]] = n
    iso = (_EPOCH + timedelta(days=day)).isoformat()
    return sorted((_rollup(iso, k, sums, *named[k]) for k, sums in rows.items()), key=_order)


def _rollup(
    iso: str,
    key: tuple[str, ...],
    sums: Mapping[str, int],
    denials: dict[str, int],
    degradations: dict[str, int],
) -> DayRollup:
    level, value, unit, period = key
    return DayRollup(
        day=iso,
        level=level,
        value=value,
        unit=unit,
        period=period,
        limit=sums.get("limit", 0),
        spent=sums.get("spent", 0),
        reserved_peak=sums.get("reserved_peak", 0),
        calls=sums.get("calls", 0),
        reserved_sum=sums.get("reserved_sum", 0),
        committed_sum=sums.get("committed_sum", 0),
        denials=denials,
        degradations=degradations,
        shadow_denials=sums.get("shadow_denials", 0),
        value_peak=sums.get("value_peak", 0),
    )


def _order(r: DayRollup) -> tuple[int, str, str, str]:
    rank = LEVEL_ORDER.index(r.level) if r.level in LEVEL_ORDER else len(LEVEL_ORDER)
    return rank, r.value, r.unit, r.period
