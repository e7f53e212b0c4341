"""The day's rollups on memory:// (rollups.py says what they are): `Roll` is lua/common.lua's
ROLL, what one operation gathers, and `DayBook.flush` lua/rollup.lua's roll_flush, step for
step; the `roll_*` functions are reserve.lua's writes into ROLL.

A tenant's book holds a hash per local day until the history retention after the day ends:
each flush purges what is past it, and so does the sweeper, so the book stays within
retention / one day hashes of at most one row per budget line of the tenant (runs and end
users are one row per level), however many calls it serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.store.ledger.results import DayRollup
from proxy.store.ledger.rollups import (
    BOUNDED,
    SAFE,
    STAR,
    TENANT_ROW,
    day_end_ms,
    day_rows,
    days_to_read,
    local_day,
    row_of,
)


class Roll:
    """What one operation adds to the day's rollups (lua/common.lua ROLL)."""

    __slots__ = ("charged", "origin", "set", "sum", "top")

    def __init__(self) -> None:
        self.sum: dict[str, int] = {}
        self.top: dict[str, int] = {}
        self.set: dict[str, str] = {}
        self.charged: dict[str, int | None] = {}
        """Each row charged -> the local day its reservation was made on (None: unknown)."""
        self.origin: int | None = None
        """The day of the reservation the settle under way charges (ROLL.made)."""

    def clear(self) -> None:
        for gathered in (self.sum, self.top, self.set, self.charged):
            gathered.clear()
        self.origin = None

    def made(self, created_ms: int, offset_min: int) -> None:
        """The settle that follows charges a reservation made at `created_ms` (0: unknown)."""
        self.origin = local_day(created_ms, offset_min) if created_ms else None

    def add(self, name: str, x: int) -> None:
        self.sum[name] = self.sum.get(name, 0) + x

    def max(self, name: str, x: int) -> None:
        self.top[name] = max(self.top.get(name, x), x)

    def value_peak(self, prefix: str, spent: int) -> None:
        row = row_of(prefix)
        if prefix.split("|", 1)[0] in STAR:
            self.max(f"{row}|vpeak", spent)
        else:
            self.set[f"{row}|vpeak"] = str(spent)

    def charge(self, prefix: str, x: int, after: int, current: bool) -> None:
        """`x` charged on the line of `prefix`, its spent now `after`; `current`: its period
        is the day's own (lua/common.lua ROLL.charge: else the peak is left)."""
        row = row_of(prefix)
        self.add(f"{row}|spent", x)
        self.charged[row] = self.origin
        if current:
            self.value_peak(prefix, after)


def roll_denial(roll: Roll, quota: str | None, line: tuple[str, int] | None, kind: str) -> None:
    """reserve.lua roll_denial: `kind` 'deny' (enforced) or 'shadow' (a call shadow admitted),
    by the quota on the tenant-wide row, else by the line (prefix, limit in force)."""
    if quota is not None:
        roll.add(
            f"{TENANT_ROW}|deny|quota:{quota}" if kind == "deny" else f"{TENANT_ROW}|shadow", 1
        )
    elif line is not None:
        row = row_of(line[0])
        roll.add(f"{row}|deny|budget" if kind == "deny" else f"{row}|shadow", 1)
        roll.set[f"{row}|limit"] = str(line[1])


def roll_reserved(
    roll: Roll, prefix: str, limit: int, amount: int, held: int, spent: int, rule: str | None
) -> None:
    """reserve.lua's writes for a line the call took: `held` is its reserved after."""
    row = row_of(prefix)
    roll.add(f"{row}|calls", 1)
    roll.add(f"{row}|rsum", amount)
    roll.max(f"{row}|peak", held)
    roll.set[f"{row}|limit"] = str(limit)
    roll.value_peak(prefix, spent)
    if rule is not None:
        roll.add(f"{row}|degr|{rule}", 1)


def _folded(name: str, fold: set[str]) -> str:
    level, value, rest = name.split("|", 2)
    return f"{level}|*|{rest}" if f"{level}|{value}" in fold else name


def _admit(roll: Roll, fields: dict[str, str], most: int) -> None:
    """lua/rollup.lua roll_fold: the first `most` values of a bounded level in the day keep
    their row (marked in `fields`); what `roll` gathered for later ones goes to the `*` row."""
    names = [*roll.sum, *roll.top, *roll.set, *(f"{row}|" for row in roll.charged)]
    found = {f"{level}|{value}" for level, value, _ in (n.split("|", 2) for n in names)}
    fold: set[str] = set()
    for lv in sorted(v for v in found if v.split("|")[0] in BOUNDED and v[-2:] != "|*"):
        level = lv.split("|")[0]
        if f"#|{lv}" in fields:
            continue
        if int(fields.get(f"#|{level}", "0")) < most:
            fields[f"#|{lv}"] = "1"
            fields[f"#|{level}"] = str(int(fields.get(f"#|{level}", "0")) + 1)
        else:
            fold.add(lv)
    if not fold:
        return
    sums, tops, sets, charged = dict(roll.sum), dict(roll.top), dict(roll.set), dict(roll.charged)
    roll.clear()
    for name, x in sums.items():
        roll.add(_folded(name, fold), x)
    for name, x in tops.items():
        roll.max(_folded(name, fold), x)
    roll.charged = {_folded(f"{row}|", fold)[:-1]: day for row, day in charged.items()}
    for name, v in sets.items():
        moved = _folded(name, fold)
        if moved != name and name.endswith("|vpeak"):
            roll.max(moved, int(v))
        else:
            roll.set[moved] = v


def _clamp(x: int) -> int:
    return max(-SAFE, min(SAFE, x))


@dataclass(slots=True)
class _Day:
    expires: int
    fields: dict[str, str] = field(default_factory=dict)


class DayBook:
    """A tenant's day hashes by local day (days since 1970-01-01)."""

    __slots__ = ("days",)

    def __init__(self) -> None:
        self.days: dict[int, _Day] = {}

    def purge(self, now: int) -> None:
        """Forget the days whose retention has passed (a Redis key past its PEXPIREAT)."""
        for day in [d for d, h in self.days.items() if h.expires < now]:
            del self.days[day]

    def earliest(self) -> int | None:
        """When the first day is past its retention (the sweeper's due time), if any."""
        return min(h.expires for h in self.days.values()) + 1 if self.days else None

    def flush(self, roll: Roll, now: int, offset_min: int, retention_ms: int, values: int) -> None:
        """lua/rollup.lua roll_flush: write what `roll` gathered into today's hash; empty it."""
        if not (roll.sum or roll.top or roll.set):
            return
        self.purge(now)
        today = local_day(now, offset_min)
        h = self.days.setdefault(today, _Day(0))
        _admit(roll, h.fields, values)
        for name, x in roll.sum.items():
            h.fields[name] = str(_clamp(int(h.fields.get(name, "0")) + x))
        for name, x in roll.top.items():
            h.fields[name] = str(_clamp(max(int(h.fields.get(name, "0")), x)))
        for row, origin in roll.charged.items():
            limit = f"{row}|limit"
            if limit not in roll.set and limit not in h.fields:
                lender = self.days.get(today - 1 if origin is None or origin >= today else origin)
                h.fields[limit] = "0" if lender is None else lender.fields.get(limit, "0")
        h.fields |= roll.set
        h.expires = day_end_ms(today, offset_min) + retention_ms
        roll.clear()

    def read(
        self, since: str, until: str | None, now: int, offset_min: int, retention_ms: int
    ) -> list[DayRollup]:
        """Ledger.rollups on this book."""
        out: list[DayRollup] = []
        for day in days_to_read(since, until, now, offset_min, retention_ms):
            h = self.days.get(day)
            if h is not None:
                out += day_rows(day, h.fields)
        return out
