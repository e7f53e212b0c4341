"""Which plan, mode, overrides, alerts and calendar a tenant has right now, cached in the process.

The store's tenant record wins over the policy's `tenants:` section (which only seeds the store)
and an unknown tenant gets the `unknown_tenant` plan, if the policy names one. A lookup costs a
store round trip the first time a process sees a tenant; after that it is served from memory.
The cache needs no expiry and no broadcast to stay correct: every reserve request names the
record version it was built from, the reserve script compares it with the store's, and a stale
one is refused before anything happens, so the caller reloads and retries once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from proxy.core.errors import Forbidden
from proxy.core.types import Mode
from proxy.policy.runtime import Plan, Policy
from proxy.store.ledger.base import TenantStatus
from proxy.store.tenants import TenantRecord, TenantStore

UNKNOWN_TTL_S = 5.0
"""How long "no such tenant" is remembered: a newly created tenant is served within this."""


@dataclass(frozen=True, slots=True)
class TenantConfig:
    id: str
    plan: Plan
    mode: Mode
    version: int
    """The store record's version, 0 when the store has no record (unknown_tenant plan)."""
    timezone: str = "UTC"
    overrides: Mapping[str, int] = field(default_factory=dict)
    alerts: tuple[int, ...] = ()
    """Alert thresholds in basis points: the store record's, else the policy's entry for the
    tenant, else the plan's."""

    def utc_offset_min(self) -> int:
        if self.timezone == "UTC":
            return 0
        offset = datetime.now(ZoneInfo(self.timezone)).utcoffset()
        return 0 if offset is None else int(offset.total_seconds() // 60)


def unknown_tenant(tenant: str) -> Forbidden:
    """The refusal of a tenant that is not admitted (Directory.get returned None)."""
    return Forbidden(
        f"Unknown tenant {tenant!r}: neither the store nor the policy has it. Check "
        "X-Cycles-Tenant, or ask the operator to onboard the tenant.",
        type="unknown_tenant",
    )


def inactive_tenant(status: str) -> Forbidden:
    """The refusal of a suspended or closed tenant (`tenant_suspended`, `tenant_closed`)."""
    return Forbidden(
        f"Tenant is {status}: no new calls are admitted. Ask the operator to reactivate it.",
        type=f"tenant_{status}",
    )


class Directory:
    def __init__(self, store: TenantStore, policy: Callable[[], Policy], size: int = 100_000):
        self._store = store
        self._policy = policy
        self._size = size
        self._known: OrderedDict[str, TenantConfig] = OrderedDict()
        self._unknown: dict[str, float] = {}

    async def get(self, tenant: str) -> TenantConfig | None:
        """The tenant's configuration, or None for a tenant that is not admitted."""
        config = self._known.get(tenant)
        if config is not None:
            self._known.move_to_end(tenant)
            return config
        if self._unknown.get(tenant, 0.0) > time.monotonic():
            return self.fallback(tenant)
        record = await self._store.get_tenant(tenant)
        if record is None:
            self._unknown[tenant] = time.monotonic() + UNKNOWN_TTL_S
            if len(self._unknown) > self._size:
                self._unknown.clear()
            return self.fallback(tenant)
        config = self.from_record(record)
        if config is not None:
            self._known[tenant] = config
            if len(self._known) > self._size:
                self._known.popitem(last=False)
        return config

    async def status(self, tenant: str) -> TenantStatus | None:
        """The tenant's status as the store has it now (never cached: a suspension made on
        another replica counts at once); `active` for a tenant the policy admits without a
        record; None for a tenant that is not admitted (no record and no plan for it in the
        policy, or a record naming a plan the policy lacks)."""
        record = await self._store.get_tenant(tenant)
        if record is None:
            return None if self.fallback(tenant) is None else "active"
        return None if self.from_record(record) is None else record.status

    def forget(self, tenant: str) -> None:
        self._known.pop(tenant, None)
        self._unknown.pop(tenant, None)

    def clear(self) -> None:
        """Forget every tenant (the policy's plans changed): each reloads on its next call."""
        self._known.clear()
        self._unknown.clear()

    def from_record(self, record: TenantRecord) -> TenantConfig | None:
        policy = self._policy()
        plan = policy.plans.get(record.plan)
        if plan is None:
            return None
        return TenantConfig(
            id=record.id,
            plan=plan,
            mode=record.mode or policy.mode,
            version=record.version,
            timezone=record.timezone,
            overrides=dict(record.overrides),
            alerts=policy.alerts_for(record.id, plan) if record.alerts is None else record.alerts,
        )

    def fallback(self, tenant: str) -> TenantConfig | None:
        """A tenant the store does not have: the policy's seed or unknown_tenant plan."""
        policy = self._policy()
        plan = policy.plan_for(tenant)
        if plan is None:
            return None
        mode, alerts = policy.mode_for(tenant), policy.alerts_for(tenant, plan)
        return TenantConfig(id=tenant, plan=plan, mode=mode, version=0, alerts=alerts)
