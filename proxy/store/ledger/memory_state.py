"""The memory store's per-tenant state, mirroring the Redis keys step for step (see
store/redis/layout.py): the ledger hash and its expiry set, the reservation records, `:meta` and the
audit stream; and `MemoryState`, all tenants' together, which the memory ledger and the memory
tenant store share as the Redis ones share the keys.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from proxy.core.errors import range_error
from proxy.core.types import END_USER, ReservationSettings
from proxy.store.ledger import quotas
from proxy.store.ledger.base import Amounts, State, TenantStatus
from proxy.store.ledger.calendar import MINUTE_MS, Calendar, period_bound_ms
from proxy.store.ledger.checks import out_of_range
from proxy.store.ledger.common import Outcome, alerted, user_expiry
from proxy.store.ledger.expiry import ExpiryIndex
from proxy.store.ledger.memory_due import DueIndex
from proxy.store.ledger.meta import AGGREGATE, GENERATION, calendar_at
from proxy.store.ledger.rollups_memory import DayBook, Roll

TOMBSTONES_MAX = 20_000
"""Settled reservation records the memory store keeps (all tenants), besides their time limit."""
AUDIT_MAX_ENTRIES = 2_000
"""Per tenant, on the memory store (the Redis store keeps the full retention, in Redis)."""


USER_HEAD = END_USER + "|"
RUN_HEAD = "run|"


class Lines(MutableMapping[str, int]):
    """A tenant's ledger fields as Redis splits them (store/redis/layout.py): end users' in
    `users` (`:users`), the tenant's own in `own` (`:ledger`), so a read of the tenant's lines
    never walks its end users."""

    __slots__ = ("own", "users")

    def __init__(self) -> None:
        self.own: dict[str, int] = {}
        self.users: dict[str, int] = {}

    def book(self, name: str) -> dict[str, int]:
        """The dict that holds `name`: what a hot path reads and writes a line's fields in."""
        return self.users if name.startswith(USER_HEAD) else self.own

    def __getitem__(self, name: str) -> int:
        return (self.users if name.startswith(USER_HEAD) else self.own)[name]

    def get(self, name: str, default: int = 0) -> int:  # type: ignore[override]
        return (self.users if name.startswith(USER_HEAD) else self.own).get(name, default)

    def __setitem__(self, name: str, value: int) -> None:
        (self.users if name.startswith(USER_HEAD) else self.own)[name] = value

    def __delitem__(self, name: str) -> None:
        del (self.users if name.startswith(USER_HEAD) else self.own)[name]

    def __iter__(self) -> Iterator[str]:
        yield from list(self.own)
        yield from list(self.users)

    def __len__(self) -> int:
        return len(self.own) + len(self.users)


@dataclass(slots=True)
class Record:
    state: State
    owner: str
    outcome: Outcome
    amounts: dict[str, int]
    fields: tuple[str, ...]
    held: tuple[str, ...] = ()
    actual: dict[str, int] | None = None
    deadline: int = 0
    """When it expires if still OPEN (kept after it is settled, as the Redis record keeps it)."""
    created: int = 0
    """When it was reserved (0: a stand-in for a record the store lost)."""
    scope: str | None = None
    """The scope path, when the reserve asked to keep it (ReserveRequest.keep_scope)."""


@dataclass(slots=True)
class TenantState:
    name: str = ""
    ledger: Lines = field(default_factory=Lines)
    ledger_exp: ExpiryIndex = field(default_factory=ExpiryIndex)
    resv: dict[str, Record] = field(default_factory=dict)
    resv_exp: ExpiryIndex = field(default_factory=ExpiryIndex)
    meta: dict[str, str] = field(default_factory=dict)
    audit: deque[tuple[str, dict[str, str]]] = field(
        default_factory=lambda: deque(maxlen=AUDIT_MAX_ENTRIES)
    )
    """The newest AUDIT_MAX_ENTRIES entries within the retention: this store lives in the
    proxy's own memory, which must stay flat however many calls it serves."""
    audit_last: tuple[int, int] = (-1, -1)
    """The newest entry's id as (ms, seq), while `audit` is not empty (`append` writes both)."""
    audit_floor: int = -(2**63)
    """At most the oldest entry's ms (ids only grow; the deque's bound only drops older ones):
    while the retention's cutoff is not past it, nothing is due for trimming."""
    counters: quotas.Counters = field(init=False)
    roll: Roll = field(default_factory=Roll)
    """What the operation under way adds to the day's rollups (rollups_memory.py)."""
    days: DayBook = field(default_factory=DayBook)

    def __post_init__(self) -> None:
        self.counters = quotas.Counters(self.ledger_exp)

    @property
    def status(self) -> TenantStatus:
        return cast(TenantStatus, self.meta.get("status", "active"))

    def now(self, clock_ms: int) -> int:
        """The clock this tenant's operations see (plus its test clock offset)."""
        return clock_ms + int(self.meta.get("clock_offset_ms", "0"))

    def next_due(self) -> int | None:
        """When something of this tenant next expires (a deadline, a tombstone, an entry, a day
        of rollups), by the store's clock (without the test clock offset); None: nothing will."""
        earliest = (self.resv_exp.earliest(), self.ledger_exp.earliest(), self.days.earliest())
        times = [at for at in earliest if at is not None]
        return min(times) - int(self.meta.get("clock_offset_ms", "0")) if times else None

    @property
    def day_offset(self) -> int:
        """The utc offset (minutes) of the tenant's last reserve: its writes' day (meta.py)."""
        return int(self.meta.get("day_offset_min", "0"))

    def current(self, prefix: str, now: int) -> bool:
        """Whether the period of `prefix` is the current one of its kind at `now` in the
        calendar of the day's rollups (lua/common.lua ROLL.current)."""
        pid = prefix.rsplit("|", 1)[1]
        if pid == "-":
            return True
        cal = calendar_at(self.meta, now, self.day_offset)
        return cal.period_id("day" if pid[0] == "d" else "month", now) == pid

    def flush_roll(self, now: int, s: ReservationSettings) -> None:
        """Write the operation's rollups into the tenant's day (lua/rollup.lua roll_flush)."""
        self.days.flush(
            self.roll, now, self.day_offset, s.history_retention_ms, s.history_values_per_level
        )

    def check_range(self, fields: Sequence[str], kind: str, delta: Amounts) -> None:
        """Refuse (before anything is written) a change that takes a sum out of the safe range."""
        name = out_of_range(self.ledger, fields, kind, delta)
        if name is not None:
            raise range_error(self.name, name)

    def add(self, key: str, amount: int) -> None:
        self.ledger[key] = self.ledger.get(key, 0) + amount

    def touch(
        self,
        prefix: str,
        now: int,
        s: ReservationSettings,
        cal: Calendar | None,
        hold_ms: int = 0,
    ) -> None:
        """Keep an entry: see common.lua's touch (exact with a calendar, else a safe bound; a
        run entry for `hold_ms`, how long the call reserving may stay open, + the idle TTL; an
        end user's by user_expiry)."""
        pid = prefix[prefix.rindex("|") + 1 :]
        if prefix.startswith(USER_HEAD) and (cal is not None or pid == "-"):
            end = None if pid == "-" or cal is None else cal.period_end(pid)
            self.ledger_exp.keep(prefix, user_expiry(now + hold_ms, s, end))
        elif pid != "-" and cal is not None:
            self.ledger_exp.keep(prefix, cal.period_end(pid) + s.period_grace_ms)
        elif pid != "-":
            self.ledger_exp.setdefault(prefix, period_bound_ms(pid) + s.period_grace_ms)
        elif prefix.startswith(RUN_HEAD):  # common.field_expiry: other levels' never expire
            self.ledger_exp.keep(prefix, now + hold_ms + s.run_idle_ms)

    def keep(self, name: str, at: int) -> None:
        self.ledger_exp.keep(name, at)

    def drop_expired(self, now: int, limit: int | None) -> None:
        """Drop expired entries: a budget prefix's three fields, or one quota field."""
        for _, name in self.ledger_exp.pop_due(now, limit):
            if name.startswith("q|"):
                self.counters.drop(name)
            else:
                for kind in ("spent", "reserved", "credit"):
                    self.ledger.pop(f"{name}|{kind}", None)

    def settle_lines(
        self,
        fields: Sequence[str],
        free: Amounts | None,
        charge: Amounts | None,
        now: int,
        s: ReservationSettings,
    ) -> None:
        """Free `free` and charge `charge` on every field, each `spent` checked first."""
        if charge is not None:
            self.check_range(fields, "spent", charge)
        for prefix in fields:
            unit = prefix.split("|", 3)[2]
            book = self.ledger.book(prefix)
            if free is not None:
                key = prefix + "|reserved"
                book[key] = max(book.get(key, 0) - free.get(unit, 0), 0)
            if charge is not None:
                key = prefix + "|spent"
                book[key] = spent = book.get(key, 0) + charge.get(unit, 0)
                self.roll.charge(prefix, charge.get(unit, 0), spent, self.current(prefix, now))
            self.touch(prefix, now, s, None)

    def generation(self, name: str) -> int:
        """A RESET_SPENT generation (common.lua generation): `resets`, `reset|<prefix>`,
        `exp|<reservation>`; 0 when absent."""
        return self.counters.values.get(GENERATION + name, 0)

    def mark_reset(self, prefixes: Sequence[str], now: int, s: ReservationSettings) -> None:
        """tenant_ledger.lua's reset: a new generation, recorded on every line it reset."""
        if not prefixes:
            return
        gen = self.generation("resets") + 1
        self.counters.values[GENERATION + "resets"] = gen
        for prefix in prefixes:
            self.counters.values[f"{GENERATION}reset|{prefix}"] = gen
            self.keep(f"{GENERATION}reset|{prefix}", now + s.tombstone_ms)

    def mark_expiry(self, rid: str, now: int, s: ReservationSettings) -> None:
        """sweep.lua's expire(): the generation an expiry charge belongs to (when not 0)."""
        gen = self.generation("resets")
        if gen:
            self.counters.values[f"{GENERATION}exp|{rid}"] = gen
            self.keep(f"{GENERATION}exp|{rid}", now + s.tombstone_ms)

    def late_charge(
        self,
        rid: str,
        fields: Sequence[str],
        estimate: Amounts,
        actual: Amounts,
        now: int,
        s: ReservationSettings,
    ) -> tuple[dict[str, int], dict[str, int]]:
        """common.lua's late_charge(): a commit after EXPIRED_CHARGED, every line's sum checked
        before the first write. Returns what was added per prefix, and per unit actual -
        estimate or, where a line got more, the most added."""
        since, added = self.generation(f"exp|{rid}"), dict[str, int]()
        units = {*actual, *estimate}
        by_unit = {u: actual.get(u, 0) - estimate.get(u, 0) for u in units}
        for prefix in fields:
            unit = prefix.split("|")[2]
            d = actual.get(unit, 0) - estimate.get(unit, 0)
            if self.generation(f"reset|{prefix}") > since:
                d = max(d, 0)  # a reset since the expiry charge wiped it
            d = max(d, -self.ledger.get(f"{prefix}|spent", 0))
            added[prefix] = d
            by_unit[unit] = max(by_unit.get(unit, 0), d)
        self.check_range(fields, "spent", added)
        for prefix in fields:
            self.add(f"{prefix}|spent", added[prefix])
            spent = self.ledger[f"{prefix}|spent"]
            self.roll.charge(prefix, added[prefix], spent, self.current(prefix, now))
            self.touch(prefix, now, s, None)
        return added, by_unit

    def cross(
        self,
        marks: Sequence[tuple[str, int, int]],
        charged: Amounts,
        now: int,
        s: ReservationSettings,
    ) -> list[tuple[str, int, int]]:
        """common.lua's cross_marks(): of the (field, basis points, mark) triples, those this
        charge (by unit, or by field where lines differ) reached first in their period, as
        (field, basis points, spent after)."""
        out = []
        for prefix, bp, mark in marks:
            after = self.ledger.get(f"{prefix}|spent", 0)
            before = after - charged.get(prefix, charged.get(prefix.split("|")[2], 0))
            name = f"q|alert|{prefix}|{bp}"
            if before < mark <= after and name not in self.counters.values:
                self.counters.values[name] = now
                self._keep_alert(name, prefix, now, s)
                out.append((prefix, bp, after))
        return out

    def first_deny(self, prefix: str, now: int, s: ReservationSettings) -> bool:
        """reserve.lua's first_deny(): True for the first budget denial on `prefix` in its
        period (`q|alert|<prefix>|deny`, kept until the period's entries expire); never on an
        end user's line."""
        name = f"q|alert|{prefix}|deny"
        if name in self.counters.values or not alerted(prefix):
            return False
        self.counters.values[name] = now
        self._keep_alert(name, prefix, now, s)
        return True

    def _keep_alert(self, name: str, prefix: str, now: int, s: ReservationSettings) -> None:
        pid = prefix.split("|")[-1]
        if pid != "-":
            self.ledger_exp.setdefault(name, period_bound_ms(pid) + s.period_grace_ms)
        elif prefix.startswith("run|"):
            self.keep(name, now + s.run_idle_ms)

    def append(self, kind: str, fields: dict[str, str], now: int, retention_ms: int) -> None:
        """audit.lua's audit(): id `<max(now, last ms)>-<seq>`, then trim to the retention."""
        last_ms, last_seq = self.audit_last if self.audit else (-1, -1)
        ms = max(now, last_ms)
        seq = last_seq + 1 if ms == last_ms else 0
        self.audit.append((f"{ms}-{seq}", {"kind": kind, **fields}))
        self.audit_last = (ms, seq)
        # Ids only grow, so what is past the retention is at the front (XADD MINID = ...).
        cutoff = now - retention_ms
        if self.audit_floor >= cutoff:
            return
        while self.audit and int(self.audit[0][0].split("-", 1)[0]) < cutoff:
            self.audit.popleft()
        self.audit_floor = int(self.audit[0][0].split("-", 1)[0]) if self.audit else ms

    def deny(
        self, reason: str, scope: str, fields: dict[str, str], group: str, now: int, retention: int
    ) -> None:
        """audit.lua's audit_denial(): one entry per minute, reason, scope and group (the
        action, or the key grouping it: ReserveRequest.group; when the call names one); the
        rest count."""
        minute = now // MINUTE_MS
        key = f"{minute}|{reason}|{scope}"
        if group:
            key += f"|{group}"
        name = AGGREGATE + key
        self.counters.values[name] = self.counters.values.get(name, 0) + 1
        if self.counters.values[name] > 1:
            return
        self.keep(name, (minute + 1) * MINUTE_MS + retention)
        self.append("reserve", {**fields, "agg": key}, now, retention)


class MemoryState:
    """What memory:// keeps: every tenant's state, the due index (memory_due.py), the settings
    and the clock (ms; tests move it). The ledger (memory.py) and the tenant store
    (store/tenants/memory.py) work on one."""

    def __init__(self, settings: ReservationSettings, clock: Callable[[], int]) -> None:
        self.settings = settings
        self.clock = clock
        self.tenants: dict[str, TenantState] = {}
        self.due = DueIndex()

    def tenant(self, tenant: str) -> TenantState:
        """The tenant's state (created empty); the next sweep looks at it (memory_due.py)."""
        self.due.touch(tenant)
        t = self.tenants.get(tenant)
        if t is None:
            t = self.tenants[tenant] = TenantState(tenant)
        return t
