"""The top spenders of one level in one unit and period: a tenant's end users by spend, read
without holding them all (a tenant may have millions).

Both stores walk the tenant's `<level>|<value>|<unit>|<period id>|spent` fields (Redis with
HSCAN MATCH, a batch at a time, so the server is never blocked; memory:// its dict) and keep
only the best `limit` seen so far: memory stays O(limit) and the time O(entries of the tenant).
Ties go to the smaller value, so the answer does not depend on the order the walk meets them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

SPENT = "|spent"


def pattern(level: str, unit: str, period_id: str) -> str:
    """The HSCAN MATCH pattern of the `spent` fields of a level in a unit and period (values
    are [A-Za-z0-9_.-], so none holds a glob character)."""
    return f"{level}|*|{unit}|{period_id}{SPENT}"


def matches(name: str, level: str, unit: str, period_id: str) -> bool:
    """Whether a ledger field is one `pattern` matches."""
    return name.startswith(f"{level}|") and name.endswith(f"|{unit}|{period_id}{SPENT}")


class Best:
    """The `limit` most spent (field prefix, spent) pairs among those `add`ed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: list[tuple[str, int]] = []

    def add(self, fields: Iterable[tuple[str, int]]) -> None:
        """Offer a batch of (`…|spent` field, spent) pairs. A field offered again (HSCAN may
        return one more than once) replaces what it was, so no line is listed twice."""
        merged = dict(self._kept)
        for name, spent in fields:
            merged[name.removesuffix(SPENT)] = spent
        self._kept = heapq.nsmallest(self.limit, merged.items(), key=_rank)

    def prefixes(self) -> list[tuple[str, int]]:
        """The best, most spent first (ties: the smaller value first)."""
        return sorted(self._kept, key=_rank)


def _rank(pair: tuple[str, int]) -> tuple[int, str]:
    prefix, spent = pair
    return -spent, prefix
