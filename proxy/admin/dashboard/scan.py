"""Reading a tenant's audit trail for the dashboard, with a bound on every read.

What the trail records (lua/audit.lua): a `reserve` entry per decision, with `decision` DENY
(and `reason`, `scope`; identical denials within a minute are one entry with a `count`),
ALLOW_WITH_CAPS (and the degrade `rule`) or ALLOW (in shadow mode, `would` says what enforcement
would have done); a `commit` entry with what it `charged` per unit; an `expire` entry with the
`amounts` an expiry charged (state EXPIRED_CHARGED); `admin` and `reject` entries.

The store reads a trail oldest first, from a time on, at most `limit` entries. Two readers:

- `today`: the day's decisions for the tenants table, one read from the tenant's midnight of
  at most TODAY_LIMIT entries (a tenant past that shows "at least").
- `Scan`: newest first, for a tenant's page (the tail, recent denials, spend per day, tool
  calls by server and tool). It reads
  windows back from now, each of at most PAGE entries: a full window is too dense and shrinks
  to about half a page at the density it showed, a sparse one doubles the next. It stops at
  `floor_ms` or after SCAN_BUDGET entries fetched (dense windows thrown away included), and
  says how far back it got (`reached_ms`), so charts mark what it did not read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import date

from proxy.store.ledger.calendar import MINUTE_MS, local_date
from proxy.store.ledger.meta import decode_overrides
from proxy.store.tenants import AuditEntry, TenantStore

PAGE = 1000
TODAY_LIMIT = 5000
SCAN_BUDGET = 30_000
MAX_PROBES = 200
FIRST_WIDTH_MS = 15 * MINUTE_MS
TAIL = 50
RECENT = 20
TOOLS = 50
"""Tool rows at most on a tenant's page: the most called; the rest are counted under `other`."""
TOOL_PREFIX = "mcp:"


def denials(entry: AuditEntry) -> int:
    """How many enforced denials the entry stands for (aggregated ones carry a `count`)."""
    if entry.kind != "reserve" or entry.fields.get("decision") != "DENY":
        return 0
    count = entry.fields.get("count", "1")
    return int(count) if count.isascii() and count.isdigit() else 1


def shadow_denial(entry: AuditEntry) -> bool:
    fields = entry.fields
    return (
        entry.kind == "reserve"
        and fields.get("decision") != "DENY"
        and fields.get("would") == "DENY"
    )


def degradation(entry: AuditEntry) -> bool:
    return entry.kind == "reserve" and entry.fields.get("decision") == "ALLOW_WITH_CAPS"


def shadow_degradation(entry: AuditEntry) -> bool:
    fields = entry.fields
    return (
        entry.kind == "reserve"
        and fields.get("decision") == "ALLOW"
        and fields.get("would") == "ALLOW_WITH_CAPS"
    )


def charged(entry: AuditEntry) -> Mapping[str, int]:
    """What the entry added to `spent`, per unit: a commit's `charged`, an expiry's `amounts`."""
    if entry.kind == "commit":
        text = entry.fields.get("charged", "-")
    elif entry.kind == "expire" and entry.fields.get("state") == "EXPIRED_CHARGED":
        text = entry.fields.get("amounts", "-")
    else:
        return {}
    try:
        return decode_overrides(text)
    except ValueError:
        return {}


@dataclass(slots=True)
class DayCounts:
    denials: int = 0
    shadow_denials: int = 0
    degradations: int = 0
    shadow_degradations: int = 0
    truncated: bool = False
    """The day had more entries than were read: the counts are lower bounds."""

    def add(self, entry: AuditEntry) -> None:
        self.denials += denials(entry)
        self.shadow_denials += shadow_denial(entry)
        self.degradations += degradation(entry)
        self.shadow_degradations += shadow_degradation(entry)


async def today(
    store: TenantStore, tenant: str, since_ms: int, limit: int = TODAY_LIMIT
) -> DayCounts:
    entries = await store.audit(tenant, since_ms=since_ms, limit=limit)
    counts = DayCounts(truncated=len(entries) >= limit)
    for entry in entries:
        counts.add(entry)
    return counts


class Scan:
    """The trail newest first, from now back to `floor_ms`, bounded (see the module)."""

    def __init__(
        self,
        store: TenantStore,
        tenant: str,
        *,
        now_ms: int,
        floor_ms: int,
        budget: int = SCAN_BUDGET,
        page: int = PAGE,
    ) -> None:
        self._store, self._tenant = store, tenant
        self._now, self._floor = now_ms, floor_ms
        self._budget, self._page = budget, page
        self.fetched = 0
        self.reached_ms = now_ms
        """Every entry at or after this has been yielded."""
        self.complete = False
        """The scan reached `floor_ms`."""

    async def entries(self) -> AsyncIterator[AuditEntry]:
        upper: int | None = None  # the first window is open above: the store's clock may lead
        top, width = self._now, FIRST_WIDTH_MS
        for _ in range(MAX_PROBES):
            if self.fetched >= self._budget:
                return
            low = max(self._floor, top - width + 1)
            batch = await self._store.audit(
                self._tenant, since_ms=low, until_ms=upper, limit=self._page
            )
            self.fetched += len(batch)
            if len(batch) >= self._page and low < top:
                # Too dense: a page of entries spanned `span` ms; aim for half a page.
                span = batch[-1].at_ms - batch[0].at_ms + 1
                width = max(1, min(span, top - low + 1) // 2)
                continue
            for entry in reversed(batch):
                yield entry
            self.reached_ms = low
            if low <= self._floor:
                self.complete = True
                return
            top = upper = low - 1
            if len(batch) < self._page // 4:
                width *= 2


@dataclass(slots=True)
class ToolTally:
    """One tool's calls in the trail read: reserves allowed, denials, and what their commits
    and expiry charges charged per unit (one whose reserve is older than the read is not
    joined)."""

    reservations: int = 0
    denials: int = 0
    charged: dict[str, int] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return self.reservations + self.denials

    def merge(self, other: ToolTally) -> None:
        self.reservations += other.reservations
        self.denials += other.denials
        _add(self.charged, other.charged)


@dataclass(slots=True)
class Tools:
    """Tool calls by `mcp:<server>/<tool>`, from the reserve entries that name one (`action`)
    and the commits and expiry charges of their reservations. Read newest first, so a charge
    comes before its reserve: charges wait in `_charges` (at most as many as the scan reads)
    until it does. Every tool seen is tallied (the scan bounds how many); `shown` keeps the
    TOOLS most called."""

    tallies: dict[str, ToolTally] = field(default_factory=dict)
    _charges: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, entry: AuditEntry) -> None:
        fields = entry.fields
        if entry.kind in ("commit", "expire") and "reservation" in fields:
            got = charged(entry)
            if got:
                _add(self._charges.setdefault(fields["reservation"], {}), got)
            return
        action = fields.get("action", "")
        if entry.kind != "reserve" or not action.startswith(TOOL_PREFIX):
            return
        tally = self.tallies.setdefault(action, ToolTally())
        if fields.get("decision") == "DENY":
            tally.denials += denials(entry)
            return
        tally.reservations += 1
        _add(tally.charged, self._charges.pop(fields.get("reservation", ""), {}))

    def shown(self) -> dict[str, ToolTally]:
        """The TOOLS tools with the most calls (reservations and denials), the rest summed
        under `mcp:other`: a client calling made-up names under a glob price does not push the
        real tools off the page."""
        ranked = sorted(self.tallies.items(), key=lambda item: (-item[1].calls, item[0]))
        shown = dict(ranked[:TOOLS])
        if len(ranked) > TOOLS:
            other = shown.setdefault(TOOL_PREFIX + "other", ToolTally())
            for _, tally in ranked[TOOLS:]:
                other.merge(tally)
        return shown


def _add(into: dict[str, int], amounts: Mapping[str, int]) -> None:
    for unit, amount in amounts.items():
        into[unit] = into.get(unit, 0) + amount


@dataclass(slots=True)
class History:
    """What a tenant's page shows from the trail."""

    offset_min: int
    tail: list[AuditEntry] = field(default_factory=list)
    denials: list[AuditEntry] = field(default_factory=list)
    degradations: list[AuditEntry] = field(default_factory=list)
    daily: dict[tuple[str, date], int] = field(default_factory=dict)
    """(unit, local date) → what commits and expiries charged that day."""
    tools: Tools = field(default_factory=Tools)
    reached_ms: int = 0
    complete: bool = False

    def add(self, entry: AuditEntry) -> None:
        if len(self.tail) < TAIL:
            self.tail.append(entry)
        if len(self.denials) < RECENT and (denials(entry) or shadow_denial(entry)):
            self.denials.append(entry)
        if len(self.degradations) < RECENT and (degradation(entry) or shadow_degradation(entry)):
            self.degradations.append(entry)
        self.tools.add(entry)
        for unit, amount in charged(entry).items():
            day = (unit, local_date(entry.at_ms, self.offset_min))
            self.daily[day] = self.daily.get(day, 0) + amount


async def history(scan: Scan, offset_min: int) -> History:
    found = History(offset_min)
    async for entry in scan.entries():
        found.add(entry)
    found.reached_ms, found.complete = scan.reached_ms, scan.complete
    return found
