"""Redis key layout.

Everything one script touches for a tenant shares the hash tag `{t:<tenant>}`, so a tenant's keys
live in one Redis Cluster slot and a single script can read and write them atomically:

    cy:v1:{t:<tenant>}:ledger      hash  `<level>|<value>|<unit>|<period id>|spent|reserved|credit`,
                                         and the quota counters `q|…` (see store/ledger/quotas.py),
                                         except end users'
    cy:v1:{t:<tenant>}:users       hash  the end users' entries (level `user`): their lines'
                                         fields, `q|conc|user|…`, `q|rpm|user|…`,
                                         `q|gen|reset|user|…`, `q|agg|<minute>|<reason>|user|…`
                                         (lua/common.lua hkey, user_field): kept apart
                                         so that reads of the tenant's own lines (/balances, a
                                         reset) never walk millions of users
    cy:v1:{t:<tenant>}:ledger_exp  zset  `<level>|<value>|<unit>|<period id>` or a `q|…` field
                                         -> expiry (ms)
    cy:v1:{t:<tenant>}:resv        hash  reservation id -> record (see
                                         store/ledger/lua/reserve.lua), and for an action's,
                                         `<id>|scope` -> the scope path it was reserved with
                                         (deleted with the record)
    cy:v1:{t:<tenant>}:resv_exp    zset  reservation id -> deadline, or tombstone expiry (ms)
    cy:v1:{t:<tenant>}:meta        hash  the tenant record: status, plan, mode, anchor, time
                                         zone, overrides, version (see store/ledger/meta.py)
    cy:v1:{t:<tenant>}:audit       stream  the audit trail (see store/ledger/lua/audit.lua), trimmed
                                         to the retention by every append
    cy:v1:{t:<tenant>}:day:<YYYYMMDD>  hash  the tenant's rollups of that local day,
                                         `<level>|<value>|<unit>|<period>|<kind>` (written by
                                         store/ledger/lua/rollup.lua, which builds the key
                                         from KEYS[1]; read by store/ledger/rollups.py),
                                         expiring the history retention after the day ends
    cy:v1:{t:<tenant>}:outbox      stream  usage events not yet delivered (written by
                                         store/ledger/lua/outbox.lua, which is given it as
                                         KEYS[9]; read and deleted by
                                         store/ledger/outbox_redis.py)
    cy:v1:{t:<tenant>}:idem:<sha>  string  a client idempotency key (sha256 of the key, after
                                         `<sha256 of the caller's key pins>.` for a pinned
                                         API key) -> the call's claim or stored answer (see
                                         proxy/gateway/replay.py); plain SET commands, never touched
                                         by a script
    cy:v1:{t:<tenant>}:mcp:<server>:<sha>  string  an MCP session of that server the tenant
                                         bound (sha256 of the `Mcp-Session-Id`; the server name
                                         is never parsed back, and the fixed-length digest ends
                                         the key) -> `1`, with the session's TTL (see
                                         store/mcp_sessions.py); plain commands, no script
    cy:v1:{t:<tenant>}:mcpid:<server>:<sha>:<sha>  string  a request id in flight in that MCP
                                         session (sha256 of the `Mcp-Session-Id`, then of the
                                         id as the server files it, `str(id)`) -> `1`, claimed
                                         by `SET NX PX` for the server's timeout and a margin
                                         (proxy/mcp/inflight.py), deleted when its request
                                         ends; a crashed proxy's expires by itself

Tenant ids and scope values match `^[a-z0-9_.-]{1,128}$` after lowercasing: they can contain
neither `:` nor `|` nor braces, so no key or field can collide with another. No budget level is
`q`, so budget entries and quota counters cannot collide either.

Keys that cannot carry a tenant tag are outside every script and written in a fixed order (the
due index, below, is the one exception: on one Redis it is a plain key every script may touch,
in a cluster it is one key per slot):

    cy:v1:tenants      set   every tenant that has ever reserved or been created (the
                             sweeper's work list)
    cy:v1:tenant_index zset  every created tenant id, score 0 (listed in id order by ZRANGE
                             BYLEX); written after the tenant's create script
    cy:v1:instances    zset  instance id -> last heartbeat (ms)
    cy:v1:outbox_tenants set  tenants whose `:outbox` may hold entries (written after the
                             settling script; store/ledger/outbox_redis.py)
    cy:v1:outbox_sender string  the instance that delivers the usage events now (SET NX, TTL)
    cy:v1:due          zset  tenant -> its earliest due time (ms, Redis time): the first
                             deadline or tombstone expiry of its `:resv_exp`, or entry expiry of
                             its `:ledger_exp`. Written by every script that adds to either
                             (store/ledger/lua/common.lua reindex), so it is passed to every script
                             as its seventh key (`:users` is the eighth); the sweeper
                             visits only the tenants it says are due.
    cy:v1:due:{<n>}    zset  Redis Cluster only: the same, one per slot, since a script may
                             only touch keys of its tenant's slot: `<n>` is the first number
                             whose key falls in that slot (due_key)
    cy:v1:due_shards   set   Redis Cluster only: the `cy:v1:due:{<n>}` keys that may hold
                             tenants, each added before its first script runs
    cy:v1:epoch        string  written once when the store is initialised
    cy:v1:user_ids     string  how end-user ids are kept: `plain`, or under `user_ids: hash` the
                             fingerprint of the secret they are hashed with
                             (budget/end_users.py), written by the first proxy (SET NX); one
                             that keeps them otherwise refuses to start
    cy:v1:epoch:{<n>}  string  Redis Cluster only: the same, so that every master holds one
                             (the first of cy:v1:epoch, cy:v1:epoch:{0}, … in its slots; see
                             safety.py)

`v1` versions the schema: a rolling upgrade that changes it runs old and new side by side.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

PREFIX = "cy:v1"
TENANT_KEYS = ("ledger", "ledger_exp", "resv", "resv_exp", "meta", "audit")

TENANTS = f"{PREFIX}:tenants"
TENANT_INDEX = f"{PREFIX}:tenant_index"
INSTANCES = f"{PREFIX}:instances"
DUE = f"{PREFIX}:due"
DUE_SHARDS = f"{PREFIX}:due_shards"
EPOCH = f"{PREFIX}:epoch"
USER_IDS = f"{PREFIX}:user_ids"
OUTBOX_TENANTS = f"{PREFIX}:outbox_tenants"
OUTBOX_SENDER = f"{PREFIX}:outbox_sender"


def epoch_candidates(limit: int = 1 << 20) -> Iterator[str]:
    """`cy:v1:epoch`, then `cy:v1:epoch:{0}`, `cy:v1:epoch:{1}`, …: one in each slot long before
    `limit`, so every master of a cluster finds one of its own (safety.py)."""
    yield EPOCH
    for n in range(limit):
        yield f"{EPOCH}:{{{n}}}"


def idempotency_key(tenant: str, digest: str) -> str:
    """Where a tenant's client idempotency key `digest` (gateway/replay.py: hex sha256, or two) is
    recorded."""
    return f"{PREFIX}:{{t:{tenant}}}:idem:{digest}"


def mcp_session_key(tenant: str, server: str, digest: str) -> str:
    """Where the tenant's binding of MCP session `digest` (hex sha256 of its id) of `server`
    is kept (store/mcp_sessions.py)."""
    return f"{PREFIX}:{{t:{tenant}}}:mcp:{server}:{digest}"


def mcp_claim_key(tenant: str, server: str, session: str, request: str) -> str:
    """Where the claim of request id digest `request` in MCP session digest `session` of
    `server` is kept (store/mcp_sessions.py); `mcpid`, not `mcp`, so no claim key is a
    session key."""
    return f"{PREFIX}:{{t:{tenant}}}:mcpid:{server}:{session}:{request}"


def day_key(tenant: str, day: str) -> str:
    """The hash of a tenant's rollups of local day `day` (`20261205`): lua/rollup.lua roll_key
    builds the same name from the tenant's `:ledger` key."""
    return f"{PREFIX}:{{t:{tenant}}}:day:{day}"


def outbox_key(tenant: str) -> str:
    """The stream of a tenant's undelivered usage events (KEYS[9] of every per-tenant script:
    lua/outbox.lua writes it)."""
    return f"{PREFIX}:{{t:{tenant}}}:outbox"


def scope_field(reservation_id: str) -> str:
    """The `:resv` field beside a reservation's record that holds its scope path."""
    return f"{reservation_id}|scope"


def tenant_keys(tenant: str) -> list[str]:
    """The KEYS of every per-tenant script, in TENANT_KEYS order."""
    tag = f"{PREFIX}:{{t:{tenant}}}"
    return [f"{tag}:{name}" for name in TENANT_KEYS]


def users_key(tenant: str) -> str:
    """The hash of a tenant's end users' entries (KEYS[8] of every per-tenant script)."""
    return f"{PREFIX}:{{t:{tenant}}}:users"


USER_FIELDS = re.compile(r"(user|q\|(conc|rpm|gen\|reset)\|user|q\|agg\|[0-9]+\|[^|]*\|user)\|")
"""The ledger fields kept in `:users`: lua/common.lua hkey's rule."""


def user_field(field: str) -> bool:
    """Whether `field` is an end user's, kept in `:users` rather than `:ledger` (as hkey)."""
    return USER_FIELDS.match(field) is not None


def due_key(tenant: str, cluster: bool) -> str:
    """The due index that holds `tenant`: `cy:v1:due`, or in a cluster the one in its slot."""
    if not cluster:
        return DUE
    return f"{DUE}:{{{_slot_tags()[key_slot(f't:{tenant}'.encode())]:d}}}"


@cache
def _slot_tags() -> dict[int, int]:
    """Slot -> the first n whose `cy:v1:due:{n}` falls in it (about 110k CRCs, once)."""
    tags: dict[int, int] = {}
    n = 0
    while len(tags) < REDIS_CLUSTER_HASH_SLOTS:
        tags.setdefault(key_slot(f"{DUE}:{{{n}}}".encode()), n)
        n += 1
    return tags
