"""What an API key is, how it is stored, and the interface every key store offers.

A key is `ck-` followed by 32 characters drawn with `secrets` from [A-Za-z0-9] (about 190 bits).
It is shown once, when created; the stores keep only its SHA-256 in hex. A fast, unsalted hash
is the right choice here: the key is random, so there is nothing for a slow hash (bcrypt, argon2)
to protect against guessing, while every cache miss would pay for one, and an unsalted hash is
what lets a request's key be looked up by its hash.

A record never carries the hash or the key: `list` hands records to an operator as they are.

A key may pin any scope level below its tenant (`PINNABLE`): calls made with it are that
workspace, app, workflow, agent, toolset, run or end user, whatever the caller's headers say
(gateway/identity.py refuses a header that disagrees, budget/end_users.py a body). An operator
can so issue a key per agent, or per end user. A pinned user is kept as given (under `user_ids:
hash` the ledger keeps its hash, the key record the id).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from proxy.core.errors import CyclesError
from proxy.core.types import SCOPE_VALUE as VALUE

ALPHABET = string.ascii_letters + string.digits
ID_ALPHABET = string.ascii_lowercase + string.digits
PREFIX = "ck-"
KEY_CHARS = 32
SHOWN_CHARS = 6
PLAIN = re.compile(r"ck-[A-Za-z0-9]{32}")
NONE = "-"
PINNABLE: tuple[str, ...] = ("workspace", "app", "workflow", "agent", "toolset", "run", "user")
"""Scope levels a key may pin, outermost first (the tenant it is bound to always)."""
LATER_PINS: tuple[str, ...] = PINNABLE[2:]
"""Pins a record of the first layout (workspace and app only) has no field for."""
LAYOUTS: tuple[int, ...] = (9, 13, 14)
"""The tokens of each layout: workspace and app pins; then workflow, agent, toolset and run;
then the end user."""

State = Literal["active", "revoked"]


class KeyNotFound(CyclesError):
    """No key with this id belongs to this tenant (or it is already revoked, for `rotate`)."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    """Short public id, for listing, revoking and rotating."""
    tenant: str
    workspace: str | None
    """When set, calls made with this key are narrowed to this workspace."""
    app: str | None
    state: State
    expires_ms: int
    """Unix ms after which the key stops working; 0 = never. Rotation sets it on the old key."""
    created_ms: int
    prefix: str
    """The first characters after `ck-`, so an operator can tell keys apart in a listing."""
    workflow: str | None = None
    agent: str | None = None
    toolset: str | None = None
    run: str | None = None
    user: str | None = None

    def usable(self, now_ms: int) -> bool:
        return self.state == "active" and (self.expires_ms == 0 or now_ms < self.expires_ms)

    @property
    def pins(self) -> dict[str, str]:
        """Level → value of every level this key pins (below its tenant), outermost first."""
        values = (getattr(self, level) for level in PINNABLE)
        return {level: value for level, value in zip(PINNABLE, values, strict=True) if value}


Records = list[KeyRecord]
Row = tuple[str, KeyRecord]
"""(sha, record): what the stores keep."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_plain() -> str:
    return PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(KEY_CHARS))


def digest(plain: str) -> str:
    """SHA-256 hex of the whole key: the only form in which a key is ever stored."""
    return hashlib.sha256(plain.encode()).hexdigest()


def new_record(
    tenant: str, pins: Mapping[str, str | None], created_ms: int
) -> tuple[str, str, KeyRecord]:
    """(plain key, sha, record) of a fresh active key; validates the scope values, and refuses a
    level no key can pin."""
    unknown = sorted(set(pins) - set(PINNABLE))
    if unknown:
        raise ValueError(
            f"a key cannot pin {', '.join(map(repr, unknown))}; it may pin {', '.join(PINNABLE)}"
        )
    plain = new_plain()
    key_id = "key_" + "".join(secrets.choice(ID_ALPHABET) for _ in range(12))
    pinned = {level: _scope_value(level, value) for level, value in pins.items() if value}
    record = KeyRecord(
        key_id=key_id,
        tenant=_scope_value("tenant", tenant),
        workspace=pinned.get("workspace"),
        app=pinned.get("app"),
        state="active",
        expires_ms=0,
        created_ms=created_ms,
        prefix=plain[len(PREFIX) : len(PREFIX) + SHOWN_CHARS],
        workflow=pinned.get("workflow"),
        agent=pinned.get("agent"),
        toolset=pinned.get("toolset"),
        run=pinned.get("run"),
        user=pinned.get("user"),
    )
    return plain, digest(plain), record


def _scope_value(level: str, value: str) -> str:
    if not VALUE.fullmatch(value):
        raise ValueError(
            f"{level} {value!r} is not a valid scope value: use 1 to 128 characters from "
            "A-Z, a-z, 0-9, '_', '.' and '-' (not '-' alone)"
        )
    return value.lower()


def revoked(record: KeyRecord) -> KeyRecord:
    return replace(record, state="revoked")


def expiring(record: KeyRecord, at_ms: int) -> KeyRecord:
    """The record ending at `at_ms`, or sooner if it already ends sooner."""
    if record.expires_ms and record.expires_ms <= at_ms:
        return record
    return replace(record, expires_ms=at_ms)


def encode(sha: str, record: KeyRecord) -> str:
    """`sha key_id tenant workspace app state expires_ms created_ms prefix`, '-' for none, then
    `workflow agent toolset run` only when the key pins one of them or the user, then `user`
    only when it pins one. No token can contain a space: scope values, ids and prefixes are all
    [a-z0-9_.-].

    A key is written in the shortest layout (LAYOUTS) that holds its pins, so a replica of a
    release before the later pins reads it as it always did. One with pins it does not know is
    longer, which such a replica fails to read (its call is a 500) instead of accepting the key
    without its pins: it fails closed."""
    tokens = [
        sha,
        record.key_id,
        record.tenant,
        record.workspace or NONE,
        record.app or NONE,
        record.state,
        str(record.expires_ms),
        str(record.created_ms),
        record.prefix,
    ]
    later = [getattr(record, level) or NONE for level in LATER_PINS]
    if later[-1] == NONE:
        later.pop()  # no end user: the second layout, or the first
    if any(value != NONE for value in later):
        tokens += later
    return " ".join(tokens)


def decode(text: str) -> Row:
    tokens = text.split(" ")
    if len(tokens) not in LAYOUTS:
        raise ValueError(f"a key record has {len(tokens)} fields, not one of {LAYOUTS}")
    sha, key_id, tenant, workspace, app, state, expires, created, prefix = tokens[:9]
    if state not in ("active", "revoked"):
        raise ValueError(f"key record {key_id} has an unknown state {state!r}")
    later = [*tokens[9:], *[NONE] * (LAYOUTS[-1] - len(tokens))]
    workflow, agent, toolset, run, user = (_none(t) for t in later)
    record = KeyRecord(
        key_id=key_id,
        tenant=tenant,
        workspace=_none(workspace),
        app=_none(app),
        state="active" if state == "active" else "revoked",
        expires_ms=int(expires),
        created_ms=int(created),
        prefix=prefix,
        workflow=workflow,
        agent=agent,
        toolset=toolset,
        run=run,
        user=user,
    )
    return sha, record


def _none(token: str) -> str | None:
    return None if token == NONE else token


class Listener(Protocol):
    """Told when a key changes, so a cache can drop it."""

    def evict(self, sha: str) -> None: ...

    def clear(self) -> None:
        """Forget everything: changes may have been missed (a lost subscription)."""


class KeyStore(Protocol):
    """Tenants' API keys. `memory://` (this process) or Redis, chosen by the store URL."""

    async def create(self, tenant: str, **pins: str | None) -> tuple[str, KeyRecord]:
        """A new active key: (the plain key, shown this once, and its record), pinning the
        levels given (`PINNABLE`; None: not pinned)."""

    async def lookup(self, sha: str) -> KeyRecord | None:
        """The record of the key with this SHA-256, whatever its state; None if unknown."""

    async def list(self, tenant: str) -> Records:
        """The tenant's keys, oldest first, revoked ones included."""

    async def revoke(self, tenant: str, key_id: str) -> KeyRecord:
        """Stop the key at once; idempotent. KeyNotFound if the tenant has no such key."""

    async def rotate(self, tenant: str, key_id: str, grace_ms: int) -> tuple[str, KeyRecord]:
        """A new key with the same pins; the old one keeps working `grace_ms` longer."""

    async def revoke_all(self, tenant: str) -> int:
        """Revoke every key of the tenant (closing it); returns how many were active."""

    def now_ms(self) -> int:
        """Unix ms by this store's clock (injectable, for tests)."""

    def add_listener(self, listener: Listener) -> None:
        """Tell `listener` about every change made through this store object."""

    async def follow(self, listener: Listener) -> None:
        """Until cancelled, tell `listener` about changes made by other processes (if any)."""

    async def close(self) -> None: ...


class KeyStoreBase(ABC):
    """The operations, written once over the primitives a store provides."""

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self._clock = clock
        self._listeners: list[Listener] = []

    @abstractmethod
    async def _rows(self, tenant: str) -> dict[str, Row]:
        """key_id → (sha, record) for every key of the tenant."""

    @abstractmethod
    async def _put(self, rows: Sequence[Row]) -> None:
        """Write the rows: tenant side, then the global index, then announce the change."""

    def now_ms(self) -> int:
        return self._clock()

    async def create(self, tenant: str, **pins: str | None) -> tuple[str, KeyRecord]:
        plain, sha, record = new_record(tenant, pins, self.now_ms())
        await self._put([(sha, record)])
        return plain, record

    async def list(self, tenant: str) -> Records:
        rows = await self._rows(tenant.lower())
        return sorted((r for _, r in rows.values()), key=lambda r: (r.created_ms, r.key_id))

    async def revoke(self, tenant: str, key_id: str) -> KeyRecord:
        sha, record = await self._row(tenant, key_id)
        await self._put([(sha, revoked(record))])
        return revoked(record)

    async def rotate(self, tenant: str, key_id: str, grace_ms: int) -> tuple[str, KeyRecord]:
        if grace_ms < 0:
            raise ValueError("grace_ms must be 0 or more")
        old_sha, old = await self._row(tenant, key_id)
        now = self.now_ms()
        if not old.usable(now):
            raise KeyNotFound(f"key {key_id} of tenant {tenant!r} is revoked or expired")
        plain, sha, record = new_record(old.tenant, old.pins, now)
        # The new key first: whatever happens next, the tenant is never left without one.
        await self._put([(sha, record)])
        await self._put([(old_sha, expiring(old, now + grace_ms))])
        return plain, record

    async def revoke_all(self, tenant: str) -> int:
        rows = (await self._rows(tenant.lower())).values()
        now = self.now_ms()
        active = sum(1 for _, record in rows if record.usable(now))
        await self._put([(sha, revoked(record)) for sha, record in rows])
        return active

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def follow(self, listener: Listener) -> None:
        """This store sees every change itself: nothing to follow."""
        return None

    async def close(self) -> None:
        """Nothing to release."""
        return None

    async def _row(self, tenant: str, key_id: str) -> Row:
        row = (await self._rows(tenant.lower())).get(key_id)
        if row is None:
            raise KeyNotFound(f"tenant {tenant!r} has no key {key_id!r}")
        return row

    def _changed(self, shas: Sequence[str]) -> None:
        for listener in self._listeners:
            for sha in shas:
                listener.evict(sha)
