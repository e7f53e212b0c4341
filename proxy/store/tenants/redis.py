"""`TenantStore` on Redis: each change is one script (lua/tenant.lua, lua/tenant_ledger.lua)
that writes `:meta` or the ledger and appends its audit entry atomically. The listing index and
the sweeper's set are not tenant-tagged, so they are written after the script, in that order.

It runs on a Redis ledger's `scripts` (store/ledger/scripts.py): the same keys, client and epoch.
The scripts stay with the ledger's (store/ledger/lua/): each is prepended with common.lua, and a
fresh server gets all of them in one SCRIPT LOAD.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal, cast

from proxy.core.types import Mode, Period, Unit
from proxy.store.boundary import GuardedStore
from proxy.store.ledger.base import BalanceRow, TenantStatus
from proxy.store.ledger.checks import check_amount
from proxy.store.ledger.common import balance_rows
from proxy.store.ledger.scripts import STORE, Scripts
from proxy.store.redis import layout
from proxy.store.redis.errors import REDIS
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
    select,
    update_fields,
    utc_offset_min,
)


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _raise(tenant: str, outcome: str) -> None:
    if outcome == "not_found":
        raise TenantNotFound(f"tenant {tenant!r} does not exist")
    if outcome == "closed":
        raise TenantClosed(f"tenant {tenant!r} is closed; a closed tenant cannot be changed")
    if outcome == "exists":
        raise TenantExists(f"tenant {tenant!r} already exists (ids are never reused)")


class RedisTenants(GuardedStore):
    """`TenantStore` on a Redis ledger's `scripts` (RedisLedger.scripts)."""

    boundary = REDIS
    store_name = STORE

    def __init__(self, scripts: Scripts) -> None:
        self._client = scripts.client
        self._run = scripts.run
        self._epoch = scripts.epoch

    async def _admin(self, tenant: str, op: str, args: Sequence[str]) -> tuple[str, TenantRecord]:
        reply: list[str] = await self._run("tenant", tenant, [op, *args])
        _raise(tenant, reply[0])
        record = decode_record(tenant, _pairs(reply[1:]))
        assert record is not None
        return reply[0], record

    async def _offset(self, tenant: str) -> int:
        record = await self.get_tenant(tenant)
        if record is None:
            raise TenantNotFound(f"tenant {tenant!r} does not exist")
        return utc_offset_min(record.timezone)

    async def create_tenant(self, record: TenantRecord, *, actor: str) -> TenantRecord:
        check_record(record)
        fields = [x for pair in encode_record(record).items() for x in pair]
        _, created = await self._admin(record.id, "create", [actor, "create", "0", *fields])
        await self._client.zadd(layout.TENANT_INDEX, {record.id: 0})
        await self._client.sadd(layout.TENANTS, record.id)
        return created

    async def get_tenant(self, tenant: str) -> TenantRecord | None:
        self._epoch.guard()
        meta = await self._client.hgetall(layout.tenant_keys(tenant)[4])
        return decode_record(tenant, cast(dict[str, str], meta))

    async def list_tenants(self, *, after: str | None, limit: int) -> list[TenantRecord]:
        start = "-" if after is None else f"({after}"
        ids = cast(
            list[str],
            await self._client.zrange(
                layout.TENANT_INDEX, start, "+", bylex=True, offset=0, num=limit
            ),
        )
        async with self._client.pipeline(transaction=False) as pipe:
            for tenant in ids:
                pipe.hgetall(layout.tenant_keys(tenant)[4])
            metas = await pipe.execute()
        found = (decode_record(t, m) for t, m in zip(ids, metas, strict=True))
        return [r for r in found if r is not None]

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
        offset = await self._offset(tenant)
        args = [actor, reason, str(offset), "-" if anchor_day is None else str(anchor_day)]
        for pair in update_fields(plan, mode, overrides, anchor_day, timezone, alerts):
            args += pair
        return (await self._admin(tenant, "update", args))[1]

    async def note_rejection(self, tenant: str, reason: str) -> None:
        await self._run("tenant", tenant, ["note", "identity", reason, "0"])

    async def change_status(
        self, tenant: str, status: TenantStatus, *, actor: str, reason: str
    ) -> tuple[TenantRecord, bool]:
        outcome, record = await self._admin(tenant, "status", [actor, reason, "0", status])
        return record, outcome == "ok"

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
        offset = await self._offset(tenant)
        args = ["adjust", actor, reason, str(offset), level, value, unit, period, f"{amount:d}"]
        return (await self._ledger_op(tenant, args))[0]

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
        offset = await self._offset(tenant)
        every = reset_units(units)
        args = ["reset", actor, reason, str(offset), level or "-", value or "-", *every]
        return await self._ledger_op(tenant, args)

    async def _ledger_op(self, tenant: str, args: Sequence[str]) -> list[BalanceRow]:
        reply: list[str] = await self._run("tenant_ledger", tenant, args)
        _raise(tenant, reply[0])
        fields: dict[str, int | str] = {}
        for i in range(int(reply[1])):
            prefix, *sums = reply[2 + 4 * i : 6 + 4 * i]
            for kind, amount in zip(("spent", "reserved", "credit"), sums, strict=True):
                fields[f"{prefix}|{kind}"] = amount
        return balance_rows(fields)

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
        ledger, audit = layout.tenant_keys(tenant)[0], layout.tenant_keys(tenant)[5]
        low = "-" if since_ms is None else str(since_ms)
        high = "+" if until_ms is None else str(until_ms)
        # Unfiltered, the first `limit` entries are all that is kept: Redis stops there.
        count = limit if run is None and decision is None else None
        raw = cast(
            list[tuple[str, dict[str, str]]],
            await self._client.xrange(audit, low, high, count=count),
        )
        chosen = select(raw, run=run, decision=decision, limit=limit)
        names = [f"q|agg|{fields['agg']}" for _, fields in chosen if "agg" in fields]
        by_name: dict[str, str | None] = {}
        for key in (ledger, layout.users_key(tenant)):  # each name from the hash hkey picks
            wanted = [n for n in names if (key != ledger) == layout.user_field(n)]
            counts = cast(list[str | None], await self._client.hmget(key, wanted) if wanted else [])
            by_name.update(zip(wanted, counts, strict=True))
        return [counted(i, f, _count(by_name.get(f"q|agg|{f.get('agg')}"))) for i, f in chosen]

    async def seed(self, records: list[TenantRecord]) -> int:
        created = 0
        for record in records:
            try:
                await self.create_tenant(record, actor="policy")
            except TenantExists:
                continue
            created += 1
        return created


def _count(text: str | None) -> int | None:
    return None if text is None else int(text)
