"""The tenant record and the audit trail as both stores keep them (pure; no I/O): a record is
its `:meta` hash (store/ledger/meta.py lists the fields), an audit entry the string fields of one
`:audit` stream entry, with `kind` (reserve | commit | release | expire | admin | reject); see
`proxy/store/ledger/lua/audit.lua` for what each kind records.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal, cast
from zoneinfo import ZoneInfo

from proxy.core.types import Mode
from proxy.store.ledger.base import TenantStatus
from proxy.store.ledger.calendar import Calendar, Hold
from proxy.store.ledger.checks import check_amount
from proxy.store.ledger.meta import decode_overrides, encode_overrides
from proxy.store.tenants.base import AuditEntry, AuditKind, TenantRecord

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def encode_alerts(alerts: Sequence[int] | None) -> str:
    if alerts is None:
        return ""
    return ",".join(f"{bp:d}" for bp in sorted(set(alerts))) or "none"


def decode_alerts(text: str) -> tuple[int, ...] | None:
    if text == "":
        return None
    return () if text == "none" else tuple(int(bp) for bp in text.split(","))


def check_alerts(alerts: Sequence[int]) -> None:
    for bp in alerts:
        if not 0 < bp <= 10_000:
            raise ValueError(f"alert threshold {bp} basis points is not in 1..10000 (0.01-100 %)")


def encode_record(record: TenantRecord) -> dict[str, str]:
    """The :meta fields a create writes (version and created_ms are the store's)."""
    return {
        "status": record.status,
        "plan": record.plan,
        "mode": record.mode or "",
        "anchor_day": str(record.anchor_day),
        "timezone": record.timezone,
        "overrides": encode_overrides(record.overrides),
        "alerts": encode_alerts(record.alerts),
    }


def decode_record(tenant: str, meta: Mapping[str, str]) -> TenantRecord | None:
    if "created_ms" not in meta:
        return None
    pending = meta.get("pending_anchor", "")
    return TenantRecord(
        id=tenant,
        plan=meta.get("plan", ""),
        status=cast(TenantStatus, meta.get("status", "active")),
        mode=cast(Mode, meta["mode"]) if meta.get("mode") else None,
        anchor_day=int(pending or meta.get("anchor_day", "1")),
        timezone=meta.get("timezone", "UTC"),
        overrides=decode_overrides(meta.get("overrides", "-")),
        alerts=decode_alerts(meta.get("alerts", "")),
        version=int(meta.get("version", "0")),
        created_ms=int(meta["created_ms"]),
    )


def hold_fields(cal: Calendar, now_ms: int) -> dict[str, str]:
    """The `:meta` fields a time-zone change writes: the day and the month current now (in the
    old zone, `cal`) are held until they end there (calendar.py)."""
    out = {}
    for kind in ("day", "month"):
        pid = cal.period_id(kind, now_ms)
        out[f"hold_{kind}"] = Hold(pid, cal.period_end(pid)).encode()
    return out


def utc_offset_min(timezone: str, at_ms: int | None = None) -> int:
    """The zone's offset from UTC in minutes at `at_ms` (default: now)."""
    at = datetime.now(UTC) if at_ms is None else datetime.fromtimestamp(at_ms / 1000, UTC)
    offset = at.astimezone(ZoneInfo(timezone)).utcoffset()
    return 0 if offset is None else int(offset.total_seconds()) // 60


def check_record(record: TenantRecord) -> None:
    """Refuse what a store could not keep: an anchor outside 1..31, an unknown time zone, an
    override out of range (ZoneInfoNotFoundError, ValueError, AmountOutOfRange)."""
    if not 1 <= record.anchor_day <= 31:
        raise ValueError(f"anchor_day must be in 1..31, got {record.anchor_day}")
    ZoneInfo(record.timezone)
    check_overrides(record.overrides)
    check_alerts(record.alerts or ())


def check_overrides(overrides: Mapping[str, int]) -> None:
    for level, limit in overrides.items():
        if not _NAME.match(level):
            raise ValueError(f"override level {level!r} must match [A-Za-z0-9_.-]{{1,128}}")
        check_amount(f"override of {level}", limit)


def entry(entry_id: str, fields: Mapping[str, str]) -> AuditEntry:
    rest = {k: v for k, v in fields.items() if k != "kind"}
    return AuditEntry(entry_id, int(entry_id.split("-")[0]), cast(AuditKind, fields["kind"]), rest)


def select(
    entries: Iterable[tuple[str, Mapping[str, str]]],
    *,
    run: str | None,
    decision: str | None,
    limit: int,
) -> list[tuple[str, Mapping[str, str]]]:
    """Filter (id, fields) pairs in stream order by run and decision, at most `limit`."""
    out = []
    for entry_id, fields in entries:
        if run is not None and fields.get("run") != run:
            continue
        if decision is not None and fields.get("decision") != decision:
            continue
        out.append((entry_id, fields))
        if len(out) >= limit:
            break
    return out


def counted(entry_id: str, fields: Mapping[str, str], count: int | None) -> AuditEntry:
    """An entry, with `count` merged in for an aggregated denial."""
    if "agg" in fields:
        fields = {**fields, "count": str(count or 1)}
    return entry(entry_id, fields)


def update_fields(
    plan: str | None,
    mode: str | None,
    overrides: Mapping[str, int] | None,
    anchor_day: int | None,
    timezone: str | None,
    alerts: Sequence[int] | Literal["inherit"] | None = None,
) -> list[tuple[str, str]]:
    """The :meta fields an update sets (the anchor is handled apart: it becomes pending)."""
    if anchor_day is not None and not 1 <= anchor_day <= 31:
        raise ValueError(f"anchor_day must be in 1..31, got {anchor_day}")
    if timezone is not None:
        ZoneInfo(timezone)
    out: list[tuple[str, str]] = []
    if plan is not None:
        out.append(("plan", plan))
    if mode is not None:
        out.append(("mode", "" if mode == "inherit" else mode))
    if overrides is not None:
        check_overrides(overrides)
        out.append(("overrides", encode_overrides(overrides)))
    if timezone is not None:
        out.append(("timezone", timezone))
    if alerts is not None:
        check_alerts(() if alerts == "inherit" else alerts)
        out.append(("alerts", encode_alerts(None if alerts == "inherit" else alerts)))
    return out
