"""A tenant's standing on the routes that reserve nothing.

Budgeted calls and action reservations have their tenant's status checked inside the reserve
script, atomically with everything else. The routes that reserve nothing (the model list,
passthrough paths, an actions balance) cost the provider account or show the ledger all the
same, so they read the status from the store on every call: one round trip, never a cached
answer, so a suspension made through any replica counts on the next call everywhere. Settling
what was admitted before a suspension (committing or releasing an action reservation) is not
refused: its real spend must still be recorded.

The store being unreachable is decided as for a budgeted call: 503 under `fail_mode: closed`,
the policy's view of the tenant under `open` (and `on_store_lost: shadow` for a lost store).
"""

from __future__ import annotations

from proxy.budget.directory import inactive_tenant, unknown_tenant
from proxy.core.errors import LedgerEpochLost, LedgerUnavailable, ServiceUnavailable
from proxy.gateway.context import Runtime
from proxy.store.ledger.base import TenantStatus


async def check_active(rt: Runtime, tenant: str) -> None:
    """403 unless `tenant` is admitted and active (module doc); 503 when that cannot be told."""
    status = await _status(rt, tenant)
    if status is None:
        raise unknown_tenant(tenant)
    if status != "active":
        raise inactive_tenant(status)


async def _status(rt: Runtime, tenant: str) -> TenantStatus | None:
    try:
        return await rt.directory.status(tenant)
    except LedgerEpochLost:
        if rt.policy.on_store_lost != "shadow":
            raise
    except LedgerUnavailable:
        if rt.policy.fail_mode == "closed":
            raise ServiceUnavailable(
                "The budget ledger is unreachable, so the tenant's status could not be checked "
                "and the call was not forwarded. Retry shortly.",
                retry_after=2,
            ) from None
    return None if rt.directory.fallback(tenant) is None else "active"
