"""Tenants as runtime state: the store side of onboarding, lifecycle, adjustments and the audit.

A tenant's record lives in its `:meta` hash, under the tenant's hash tag, so every change to it
is one script that also appends to the tenant's `:audit` stream and bumps `version`. The reserve
script reads the same hash (status, version, anchor; store/ledger/meta.py), so a request racing
a suspension or a plan change cannot slip through: it is ordered before or after it. That is why
a tenant store is built on a ledger's state (memory.py) or its scripts (redis.py), and why the
ledger never needs the tenant store: it reads `:meta` itself.

The store's record wins over the policy's `tenants:` section, which only seeds tenants the store
does not have. A closed tenant's record is kept for ever: its id is never reused.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from proxy.core.types import BUILTIN_UNITS, CALL_UNITS, Mode, Period, Unit, is_action_unit
from proxy.store.ledger.base import BalanceRow, TenantStatus

AuditKind = Literal["reserve", "commit", "release", "expire", "admin", "reject"]


def reset_units(units: Collection[str]) -> tuple[Unit, ...]:
    """The units whose lines a user reset zeroes: the built-in ones, then `units` (sorted).
    Both stores go through this, so they zero the same lines."""
    for unit in units:
        if unit not in CALL_UNITS and not is_action_unit(unit):
            raise ValueError(f"{unit!r} is not a unit")
    return (*BUILTIN_UNITS, *sorted(set(units) - set(BUILTIN_UNITS)))


class TenantExists(Exception):
    """create_tenant for an id the store already has (active, suspended or closed)."""


class TenantNotFound(Exception):
    """An operation on a tenant the store does not have."""


class TenantClosed(Exception):
    """A change to a closed tenant other than closing it again."""


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: str
    plan: str
    status: TenantStatus = "active"
    mode: Mode | None = None
    """None: the policy's global mode."""
    anchor_day: int = 1
    """Monthly periods start on this day of the month (29-31 clamp to the month's last day)."""
    timezone: str = "UTC"
    """IANA name; periods (day, month, runs_per_day) follow the tenant's local calendar."""
    overrides: Mapping[str, int] = field(default_factory=dict)
    """Scope level → limit in units, replacing the plan's limit on that level."""
    alerts: tuple[int, ...] | None = None
    """Alert thresholds in basis points replacing the plan's (and the policy's entry for the
    tenant); None: inherit them, (): no threshold alerts for this tenant."""
    version: int = 0
    """Bumped by every change; the reserve request names the version it was built from."""
    created_ms: int = 0


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    """The stream id (`<ms>-<seq>`): entries are totally ordered per tenant."""
    at_ms: int
    kind: AuditKind
    fields: Mapping[str, str]
    """What happened, e.g. decision=DENY reason=budget scope=run|r-7 reservation=… run=…;
    for aggregated denials, `count` is how many identical denials that minute held."""


class TenantStore(Protocol):
    async def create_tenant(self, record: TenantRecord, *, actor: str) -> TenantRecord:
        """Store a new tenant (version 1). TenantExists if the id was ever used."""
        ...

    async def get_tenant(self, tenant: str) -> TenantRecord | None: ...

    async def list_tenants(self, *, after: str | None, limit: int) -> list[TenantRecord]:
        """Tenants in id order, starting after `after` (a cursor), at most `limit`."""
        ...

    async def update_tenant(
        self,
        tenant: str,
        *,
        actor: str,
        reason: str,
        plan: str | None = None,
        mode: Mode | Literal["inherit"] | None = None,
        overrides: Mapping[str, int] | None = None,
        anchor_day: int | None = None,
        timezone: str | None = None,
        alerts: Sequence[int] | Literal["inherit"] | None = None,
    ) -> TenantRecord:
        """Change what is given (None: unchanged). A new anchor day applies from the next
        period, never handing out a fresh budget mid-period."""
        ...

    async def change_status(
        self, tenant: str, status: TenantStatus, *, actor: str, reason: str
    ) -> tuple[TenantRecord, bool]:
        """Suspend, reactivate or close. Returns the record and whether anything changed
        (closing a closed tenant, or suspending a suspended one, changes nothing). A closed
        tenant cannot be reactivated (TenantClosed)."""
        ...

    async def adjust(
        self,
        tenant: str,
        *,
        level: str,
        value: str,
        unit: Unit,
        period: Period,
        amount: int,
        actor: str,
        reason: str,
    ) -> BalanceRow:
        """Add `amount` (negative: a debit) to the line's `credit` in the current period."""
        ...

    async def reset(
        self,
        tenant: str,
        *,
        level: str | None,
        value: str | None,
        actor: str,
        reason: str,
        units: Collection[str] = (),
    ) -> list[BalanceRow]:
        """RESET_SPENT: zero `spent` of the current period's lines (all, or one level/value),
        never `reserved`; the audit keeps what was zeroed. Without a level only the tenant's own
        scopes are reset, never its end users; end users are reset one at a time (level `user`
        and its value), which reads that user's fields only: those of the built-in units and
        of `units` (the operator's action units the policy names, `EMAILS`), found by name."""
        ...

    async def audit(
        self,
        tenant: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        run: str | None = None,
        decision: str | None = None,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        """Entries oldest first, filtered."""
        ...

    async def note_rejection(self, tenant: str, reason: str) -> None:
        """Record a call refused before it reached the ledger (e.g. a key used with another
        tenant's header). Nothing for a tenant the store does not have."""
        ...

    async def seed(self, records: list[TenantRecord]) -> int:
        """Create the policy's seed tenants the store does not have; returns how many."""
        ...


__all__ = [
    "AuditEntry",
    "AuditKind",
    "TenantClosed",
    "TenantExists",
    "TenantNotFound",
    "TenantRecord",
    "TenantStore",
]
