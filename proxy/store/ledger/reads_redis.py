"""The reads half of RedisLedger that settling from another instance needs: a reservation's
record, and where budget lines stand now. Neither writes anything.

`reservation` is one HMGET on the tenant's `:resv` hash: the record reserve.lua wrote (state,
deadline, amounts, held counters, field prefixes), so an instance that did not make a
reservation can still settle it exactly, and the scope path kept beside it (an action's).
`lines` runs lua/lines.lua, which computes period ids and the limit in force with the same code
the reserve script uses. `top_spenders` walks the tenant's ledger with HSCAN (spenders.py).
`rollups` reads the day hashes of the range in one pipeline (rollups.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from proxy.core.types import END_USER, ReservationSettings
from proxy.store.ledger import rollups, spenders
from proxy.store.ledger.base import (
    BalanceRow,
    BudgetLine,
    DayRollup,
    LineBalance,
    ReservationRecord,
    State,
)
from proxy.store.ledger.common import balance_row, decode_amounts
from proxy.store.redis import layout
from proxy.store.redis.safety import Epoch

SCAN_BATCH = 1000
"""Fields HSCAN looks at per round trip when walking a tenant's ledger."""
STATES = ("OPEN", "COMMITTED", "RELEASED", "EXPIRED_CHARGED", "EXPIRED_RELEASED")


class RedisReads:
    """Mixed into RedisLedger, which provides `_client`, `_epoch`, `_run` (scripts.py) and
    `settings`."""

    settings: ReservationSettings
    _client: Redis | RedisCluster
    _epoch: Epoch
    _run: Callable[[str, str, Sequence[str]], Awaitable[Any]]

    async def reservation(self, tenant: str, reservation_id: str) -> ReservationRecord | None:
        self._epoch.guard()
        fields = [reservation_id, layout.scope_field(reservation_id)]
        raw, scope = await self._client.hmget(layout.tenant_keys(tenant)[2], fields)
        if raw is None:
            return None
        record = decode_record(reservation_id, _text(raw))
        return record if scope is None else replace(record, scope=_text(scope))

    async def top_spenders(
        self, tenant: str, level: str, unit: str, period_id: str, limit: int
    ) -> list[BalanceRow]:
        self._epoch.guard()
        key = layout.users_key(tenant) if level == END_USER else layout.tenant_keys(tenant)[0]
        best, cursor = spenders.Best(limit), 0
        match = spenders.pattern(level, unit, period_id)
        while True:
            cursor, batch = await self._client.hscan(key, cursor, match=match, count=SCAN_BATCH)
            fields = cast(dict[str | bytes, str | bytes], batch)
            best.add((_text(name), int(spent)) for name, spent in fields.items())
            if cursor == 0:
                break
        found = best.prefixes()
        names = [f"{p}|{kind}" for p, _ in found for kind in ("reserved", "credit")]
        sums = await self._client.hmget(key, names) if names else []
        return [
            balance_row(p, spent, int(sums[2 * i] or 0), int(sums[2 * i + 1] or 0))
            for i, (p, spent) in enumerate(found)
        ]

    async def lines(
        self, tenant: str, lines: Sequence[BudgetLine], utc_offset_min: int = 0
    ) -> list[LineBalance]:
        self._epoch.guard()
        args = [str(utc_offset_min)]
        for line in lines:
            args += [line.level, line.value, line.unit, line.period, str(line.limit)]
        reply: list[str] = await self._run("lines", tenant, args)
        out = []
        for i, line in enumerate(lines):
            pid, limit, spent, reserved, credit = reply[5 * i : 5 * i + 5]
            kept = BudgetLine(line.level, line.value, line.unit, line.period, int(limit))
            out.append(LineBalance(kept, pid, int(spent), int(reserved), int(credit)))
        return out

    async def rollups(self, tenant: str, since: str, until: str | None = None) -> list[DayRollup]:
        self._epoch.guard()
        fields = ("clock_offset_ms", "day_offset_min")
        skew, offset = await self._client.hmget(layout.tenant_keys(tenant)[4], fields)
        seconds, micros = await self._client.time()
        now = int(seconds) * 1000 + int(micros) // 1000 + int(skew or 0)
        days = rollups.days_to_read(
            since, until, now, int(offset or 0), self.settings.history_retention_ms
        )
        if not days:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(layout.day_key(tenant, rollups.day_name(day)))
            hashes = await pipe.execute()
        return [
            row for day, h in zip(days, hashes, strict=True) for row in rollups.day_rows(day, h)
        ]


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def decode_record(reservation_id: str, text: str) -> ReservationRecord:
    """A `:resv` value, `STATE created_ms deadline_ms owner outcome amounts actual held
    prefix…` (lua/reserve.lua documents it)."""
    state, _created, deadline, _owner, _outcome, amounts, actual, held, *fields = text.split(" ")
    if state not in STATES:
        raise ValueError(f"reservation {reservation_id!r} has unknown state {state!r}")
    return ReservationRecord(
        id=reservation_id,
        state=cast(State, state),
        deadline_ms=int(deadline),
        amounts=decode_amounts(amounts),
        fields=tuple(fields),
        held=() if held == "-" else tuple(held.split(",")),
        actual=None if actual == "-" else decode_amounts(actual),
    )
