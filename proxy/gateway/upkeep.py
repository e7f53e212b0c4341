"""What a running proxy does besides serving calls: heartbeat, sweep, seed the policy's tenants
into the store, and let calls in flight settle when it stops. app.py runs each in a cleanup
context of its own."""

from __future__ import annotations

import asyncio
import logging

from proxy.core import tasks
from proxy.core.errors import LedgerError
from proxy.gateway.metrics import Metrics, timed
from proxy.policy.runtime import Policy
from proxy.store.ledger.base import Ledger
from proxy.store.tenants import TenantRecord, TenantStore

log = logging.getLogger(__name__)

SETTLE_ON_STOP = 30.0
"""Seconds calls still in flight get to settle at shutdown, after the drain; then the proxy
gives up on them, charging each what it holds."""


async def seed(store: TenantStore, policy: Policy) -> bool:
    """Create the policy's tenants the store does not have (the store's records win); False
    when the store could not be reached."""
    seeds = [TenantRecord(seed.id, seed.plan, mode=seed.mode) for seed in policy.tenants.values()]
    try:
        created = await store.seed(seeds)
    except LedgerError as exc:
        log.warning("could not seed the policy's tenants into the store yet (%s)", exc)
        return False
    if created:
        log.info("seeded %d tenants from the policy into the store", created)
    return True


class Seeder:
    """The policy's tenants, seeded at start; when the store could not be reached then, again
    on every sweep until it could."""

    def __init__(self, store: TenantStore, policy: Policy) -> None:
        self._store = store
        self._pending: Policy | None = policy

    async def seed(self) -> None:
        if self._pending is not None and await seed(self._store, self._pending):
            self._pending = None


async def heartbeat_forever(ledger: Ledger, every: float) -> None:
    """Tell other instances this one is alive, every `every` seconds, whatever the sweeper is
    doing: a task of its own, so no work of this instance can make it look dead."""
    while True:
        try:
            await ledger.heartbeat()
        except LedgerError as exc:
            log.warning("heartbeat: ledger unavailable (%s)", exc)
        await asyncio.sleep(every)


async def sweep_forever(
    ledger: Ledger, every: float, seeder: Seeder, metrics: Metrics | None = None
) -> None:
    """Resolve overdue reservations (ours past the cap, dead instances' at once), one pass
    every `every` seconds; seed the policy's tenants if the store was unreachable at start."""
    while True:
        await seeder.seed()
        errors = ledger.sweep_errors
        try:
            resolved = await timed(metrics, "sweep", ledger.sweep_all())
            if metrics is not None:
                metrics.sweeper_reclaims.inc(resolved)
            if resolved:
                log.info("sweeper resolved %d overdue reservations", resolved)
        except LedgerError as exc:
            log.warning("sweeper: ledger unavailable (%s)", exc)
        if metrics is not None:
            metrics.sweeper_tenant_errors.inc(ledger.sweep_errors - errors)
        await asyncio.sleep(every)


async def drain_settlements(give_up: float = 5.0) -> None:
    """Let in-flight calls settle before the ledger closes. Calls still waiting for their
    provider after SETTLE_ON_STOP are given up: cancelled, which charges each what it holds
    (its request may have reached the provider), within `give_up` more seconds."""
    pending = [t for t in tasks.running() if t.get_name().startswith("call ")]
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=SETTLE_ON_STOP)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=give_up)
