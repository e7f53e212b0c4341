"""`TenantStore` in the memory store: step for step what lua/tenant.lua and
lua/tenant_ledger.lua do in Redis (the listing index is the sorted set of created tenants).

It works on the memory ledger's state (store/ledger/memory_state.MemoryState), as the Redis
tenant store works on the ledger's keys: the reserve reads the `:meta` this writes."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal

from proxy.core.types import END_USER, Mode, Period, Unit
from proxy.store.ledger.base import BalanceRow, TenantStatus
from proxy.store.ledger.calendar import Calendar
from proxy.store.ledger.checks import check_amount
from proxy.store.ledger.common import balance_rows
from proxy.store.ledger.memory_state import MemoryState, TenantState
from proxy.store.ledger.meta import AGGREGATE, calendar_at
from proxy.store.tenants.base import (
    AuditEntry,
    TenantClosed,
    TenantExists,
    TenantNotFound,
    TenantRecord,
    reset_units,
)
from proxy.store.tenants.records import (
    check_record,
    counted,
    decode_record,
    encode_record,
    hold_fields,
    select,
    update_fields,
    utc_offset_min,
)


class MemoryTenants:
    """`TenantStore` on a memory ledger's `state` (MemoryLedger.state)."""

    def __init__(self, state: MemoryState) -> None:
        self.settings = state.settings
        self._clock = state.clock
        self._tenants = state.tenants
        self._tenant = state.tenant
        """The tenant's state, created empty; the next sweep looks at it."""

    def _existing(self, tenant: str, *, open_only: bool = True) -> TenantState:
        t = self._tenants.get(tenant)
        if t is None or "created_ms" not in t.meta:
            raise TenantNotFound(f"tenant {tenant!r} does not exist")
        if open_only and t.status == "closed":
            raise TenantClosed(f"tenant {tenant!r} is closed; a closed tenant cannot be changed")
        return self._tenant(tenant)  # as reindex() in the scripts: the next sweep looks at it

    def _changed(
        self, tenant: str, t: TenantState, action: str, actor: str, reason: str, changes: str
    ) -> TenantRecord:
        t.meta["version"] = str(int(t.meta.get("version", "0")) + 1)
        fields = {"actor": actor, "reason": reason, "action": action, "changes": changes}
        t.append("admin", fields, t.now(self._clock()), self.settings.audit_retention_ms)
        return self._record(tenant, t)

    @staticmethod
    def _record(tenant: str, t: TenantState) -> TenantRecord:
        record = decode_record(tenant, t.meta)
        assert record is not None
        return record

    async def create_tenant(self, record: TenantRecord, *, actor: str) -> TenantRecord:
        check_record(record)
        t = self._tenant(record.id)
        if "created_ms" in t.meta:
            raise TenantExists(f"tenant {record.id!r} already exists (ids are never reused)")
        fields = encode_record(record)
        t.meta |= fields
        t.meta |= {"created_ms": str(t.now(self._clock())), "anchor_from_ms": "0"}
        t.meta |= {"version": "0", "pending_anchor": "", "pending_from_ms": "0"}
        changes = " ".join(f"{k}={v}" for k, v in fields.items())
        return self._changed(record.id, t, "create", actor, "create", changes)

    async def get_tenant(self, tenant: str) -> TenantRecord | None:
        t = self._tenants.get(tenant)
        return None if t is None else decode_record(tenant, t.meta)

    async def list_tenants(self, *, after: str | None, limit: int) -> list[TenantRecord]:
        ids = sorted(i for i, t in self._tenants.items() if "created_ms" in t.meta)
        ids = [i for i in ids if after is None or i > after][:limit]
        return [self._record(i, self._tenants[i]) for i in ids]

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
        pairs = update_fields(plan, mode, overrides, anchor_day, timezone, alerts)
        t = self._existing(tenant)
        now, cal = self._calendar(t)  # in the zone in effect before this change
        if timezone is not None and timezone != t.meta.get("timezone", "UTC"):
            t.meta |= hold_fields(cal, now)
        changes = []
        for name, value in pairs:
            old = t.meta.get(name, "")
            if old != value:
                t.meta[name] = value
                changes.append(f"{name}={old}->{value}")
        if anchor_day is not None:
            changes += self._set_anchor(t, str(anchor_day), cal.offset_min)
        if not changes:
            return self._record(tenant, t)
        return self._changed(tenant, t, "update", actor, reason, " ".join(changes))

    def _set_anchor(self, t: TenantState, anchor: str, offset: int) -> list[str]:
        """tenant.lua's anchor change: pending from the end of the current period (in the zone
        in effect before the update, `offset`)."""
        now, meta = t.now(self._clock()), t.meta
        if meta["pending_anchor"] and now >= int(meta["pending_from_ms"]):
            meta["anchor_day"], meta["anchor_from_ms"] = (
                meta["pending_anchor"],
                meta["pending_from_ms"],
            )
            meta["pending_anchor"] = ""
        configured = meta["pending_anchor"] or meta["anchor_day"]
        if configured == anchor:
            return []
        if anchor == meta["anchor_day"]:
            meta["pending_anchor"], meta["pending_from_ms"] = "", "0"
        else:
            cal = calendar_at(meta, now, offset)
            switch = cal.period_end(cal.period_id("month", now))
            meta["pending_anchor"], meta["pending_from_ms"] = anchor, str(switch)
        return [f"anchor_day={configured}->{anchor}"]

    async def note_rejection(self, tenant: str, reason: str) -> None:
        t = self._tenants.get(tenant)
        if t is not None and "created_ms" in t.meta:
            fields = {"actor": "identity", "reason": reason}
            t.append("reject", fields, t.now(self._clock()), self.settings.audit_retention_ms)

    async def change_status(
        self, tenant: str, status: TenantStatus, *, actor: str, reason: str
    ) -> tuple[TenantRecord, bool]:
        t = self._existing(tenant, open_only=False)
        old = t.status
        if old == status:
            return self._record(tenant, t), False
        if old == "closed":
            raise TenantClosed(f"tenant {tenant!r} is closed; a closed tenant cannot be changed")
        t.meta["status"] = status
        return self._changed(tenant, t, "status", actor, reason, f"status={old}->{status}"), True

    def _calendar(self, t: TenantState) -> tuple[int, Calendar]:
        now = t.now(self._clock())
        return now, calendar_at(t.meta, now, utc_offset_min(t.meta.get("timezone", "UTC")))

    def _admin(self, t: TenantState, action: str, actor: str, reason: str, changes: str) -> None:
        fields = {"actor": actor, "reason": reason, "action": action, "changes": changes}
        t.append("admin", fields, t.now(self._clock()), self.settings.audit_retention_ms)

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
        check_amount("adjustment", amount, low=-(2**52) + 1)
        t = self._existing(tenant)
        now, cal = self._calendar(t)
        prefix = f"{level}|{value}|{unit}|{cal.period_id(period, now)}"
        t.check_range([prefix], "credit", {unit: amount})
        t.add(f"{prefix}|credit", amount)
        t.touch(prefix, now, self.settings, cal)
        self._admin(t, "adjust", actor, reason, f"credit {prefix} {amount:d}")
        return self._rows(t, [prefix])[0]

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
        t = self._existing(tenant)
        now, cal = self._calendar(t)
        current = {"-"} | {cal.period_id(p, now) for p in ("month", "day")}
        prefixes, zeroed = [], []
        for name, amount in _candidates(t, level, value, current, reset_units(units)):
            parts = name.split("|")
            if name.startswith("q|") or len(parts) != 5 or parts[4] != "spent":
                continue
            if parts[3] in current and level in (None, parts[0]) and value in (None, parts[1]):
                prefix = name[: -len("|spent")]
                prefixes.append(prefix)
                if amount != 0:
                    zeroed.append(f"{prefix}={amount:d}")
                    t.ledger[name] = 0
        t.mark_reset(prefixes, now, self.settings)
        self._admin(t, "reset", actor, reason, " ".join(sorted(zeroed)) or "-")
        return self._rows(t, sorted(prefixes))

    @staticmethod
    def _rows(t: TenantState, prefixes: list[str]) -> list[BalanceRow]:
        kinds = ("spent", "reserved", "credit")
        return balance_rows(
            {f"{p}|{k}": t.ledger.get(f"{p}|{k}", 0) for p in prefixes for k in kinds}
        )

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
        t = self._tenant(tenant)
        low, high = since_ms or 0, until_ms if until_ms is not None else 2**63
        ranged = [(i, f) for i, f in t.audit if low <= int(i.split("-")[0]) <= high]
        chosen = select(ranged, run=run, decision=decision, limit=limit)
        counts = t.counters.values
        return [counted(i, f, counts.get(f"{AGGREGATE}{f.get('agg')}")) for i, f in chosen]

    async def seed(self, records: list[TenantRecord]) -> int:
        created = 0
        for record in records:
            try:
                await self.create_tenant(record, actor="policy")
            except TenantExists:
                continue
            created += 1
        return created


def _candidates(
    t: TenantState, level: str | None, value: str | None, current: set[str], units: Sequence[str]
) -> list[tuple[str, int]]:
    """The fields a reset may zero (tenant_ledger.lua candidates): one end user's own, or the
    tenant's own lines, never every end user's."""
    if level != END_USER:
        return list(t.ledger.own.items())
    names = (f"{END_USER}|{value}|{unit}|{pid}|spent" for unit in units for pid in current)
    return [(name, t.ledger.users[name]) for name in names if name in t.ledger.users]
