"""Tenants as runtime state: records, lifecycle, adjustments and the audit trail.

`base.TenantStore` is the interface; `memory.MemoryTenants` and `redis.RedisTenants` implement it
on a ledger's state (a tenant's `:meta` is read atomically by the ledger's reserve), and
`proxy.store.open_store` builds the one that goes with the ledger it opens. `records.py` is how
both keep a record and its audit entries.
"""

from __future__ import annotations

from proxy.store.tenants.base import (
    AuditEntry,
    AuditKind,
    TenantClosed,
    TenantExists,
    TenantNotFound,
    TenantRecord,
    TenantStore,
)

__all__ = [
    "AuditEntry",
    "AuditKind",
    "TenantClosed",
    "TenantExists",
    "TenantNotFound",
    "TenantRecord",
    "TenantStore",
]
