"""The Redis ledger: every decision is one Lua script, one round trip, atomic per tenant. The
same code serves one Redis and a Redis Cluster (store/redis/clients.py says what differs).

The scripts, and how they are run (by SHA, over the wire on one Redis), are scripts.py's, which
the tenant store (store/tenants/redis.py) shares: tenant records live in the same keys. Reads
that settling from another instance needs are in reads_redis.py, the sweeper's pass in
sweep_redis.py.

Redis errors stop here: connection trouble becomes `LedgerUnavailable` (the caller applies
`fail_mode`; `maybe_ran` says whether the command may have run), anything else `LedgerError`
(store/redis/errors.py, applied to every public method by store/boundary.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import cast

from proxy.core.errors import LedgerUnavailable, StoreUnsafe
from proxy.core.types import ReservationSettings
from proxy.store.boundary import GuardedStore
from proxy.store.ledger.base import (
    Amounts,
    BalanceRow,
    ExpiryAlerts,
    Reservation,
    ReserveRequest,
    ReserveResult,
    SettleResult,
    State,
)
from proxy.store.ledger.checks import check_amounts, check_owner, check_request, check_reservation
from proxy.store.ledger.common import (
    DENIED,
    Outcome,
    alert_marks,
    balance_rows,
    decode_amounts,
    encode_amounts,
    instance_id,
    reserve_result,
)
from proxy.store.ledger.outbox_redis import RedisOutbox
from proxy.store.ledger.reads_redis import RedisReads
from proxy.store.ledger.replies import (
    candidate_args,
    crossings,
    held_of,
    settle_flags,
    settled,
    status_of,
)
from proxy.store.ledger.scripts import STORE, Scripts
from proxy.store.ledger.sweep_redis import RedisSweep
from proxy.store.redis import layout
from proxy.store.redis.clients import Client, store_client
from proxy.store.redis.errors import REDIS
from proxy.store.redis.flights import Flights
from proxy.store.redis.safety import check_eviction, check_user_ids

log = logging.getLogger(__name__)


class RedisLedger(GuardedStore, RedisReads, RedisSweep, RedisOutbox):
    """`Ledger` on one Redis or a Redis Cluster (>= 7.0), by the URL's scheme. `owner` names
    this instance in reservations and heartbeats; an owner silent for 3 * `heartbeat_interval_s`
    is presumed dead.

    `client` is the store's shared redis-py client (store/open.py), which the ledger then does
    not close; without one it opens its own (clients.store_client: at most `max_connections`
    commands in flight, per node in a cluster, and one unanswered after `timeout_s` fails), and
    closes it. `timeout_s` bounds the wire's replies too."""

    boundary = REDIS
    store_name = STORE

    def __init__(
        self,
        url: str,
        settings: ReservationSettings,
        owner: str | None = None,
        *,
        heartbeat_interval_s: float = 5.0,
        max_connections: int = 64,
        timeout_s: float = 5.0,
        client: Client | None = None,
    ) -> None:
        super().__init__()
        self.owner = check_owner(owner or instance_id())
        self.settings = settings
        self._dead_after_ms = int(3 * heartbeat_interval_s * 1000)
        self._owns_client = client is None
        if client is None:
            client = store_client(url, max_connections=max_connections, timeout_s=timeout_s)
        self.scripts = Scripts(url, client, settings, timeout_s=timeout_s)
        """Shared with the tenant store on this ledger (store/tenants/redis.py)."""
        # What the reads and the sweeper (reads_redis.py, sweep_redis.py) work with.
        self._client = client
        self._cluster = self.scripts.cluster
        self._epoch = self.scripts.epoch
        self._run = self.scripts.run
        self._registered: set[str] = set()
        self._registering: Flights[str] = Flights()
        self.expiry_alerts: ExpiryAlerts | None = None

    async def connect(
        self, *, require_noeviction: bool = False, user_ids: str | None = None
    ) -> None:
        """Check the store is safe to keep a ledger in, and record its epoch
        (store/redis/safety.py). A store unreachable now is not fatal (the epoch is recorded on the
        first heartbeat that reaches it) unless `require_noeviction` asks for a check that cannot be
        made."""
        try:
            with self.mapped():
                await check_eviction(self._client, require=require_noeviction)
                await self._epoch.check(self._client)
                if user_ids is not None:
                    await check_user_ids(self._client, user_ids)
        except LedgerUnavailable as exc:
            if require_noeviction:
                raise StoreUnsafe(
                    f"cannot check the Redis store's maxmemory-policy ({exc}); refusing to "
                    "start: --require-noeviction."
                ) from exc
            log.warning("could not check the Redis store at start (%s); will retry", exc)

    def on_epoch_lost(self, hook: Callable[[str | None, str | None], None]) -> None:
        """Call `hook(expected, found)` once when the store's epoch is found lost."""
        self._epoch.on_lost = hook

    async def _register(self, tenant: str) -> None:
        """Put the tenant on the sweeper's list, once per tenant per process."""
        if tenant not in self._registered:
            await self._registering.run(tenant, partial(self._add_tenant, tenant))

    async def _add_tenant(self, tenant: str) -> None:
        await self._client.sadd(layout.TENANTS, tenant)
        self._registered.add(tenant)

    async def reserve(self, request: ReserveRequest) -> ReserveResult:
        self._epoch.guard()
        check_request(request)
        await self._register(request.tenant)
        reply: list[str] = await self._run("reserve", request.tenant, self._reserve_args(request))
        status, outcome, amounts, held, n = *reply[:4], int(reply[4])
        pairs = [(reply[5 + 2 * i], int(reply[6 + 2 * i])) for i in range(n)]
        first_deny = None if reply[5 + 2 * n] == "-" else reply[5 + 2 * n]
        settled = None if reply[6 + 2 * n] == "-" else cast(State, reply[6 + 2 * n])
        if outcome == "stale":
            return reserve_result(request, status_of(status), DENIED, {}, pairs, (), stale=True)
        return reserve_result(
            request,
            status_of(status),
            Outcome.decode(outcome),
            decode_amounts(amounts),
            pairs,
            reply[7 + 2 * n :],
            held_of(held),
            first_deny=first_deny,
            settled=settled,
        )

    def _reserve_args(self, request: ReserveRequest) -> list[str]:
        """ARGV 4.. of reserve.lua (its header documents the layout)."""
        q, cap = request.quotas, self.settings.cap_ms
        limits = (q.runs_per_day, q.steps_per_run, q.requests_per_minute, q.tokens_per_minute)
        args = [
            request.reservation_id,
            self.owner,
            str(min(request.ttl_ms, cap) if request.ttl_ms is not None else cap),
            ("r" if request.replay else "1") if request.shadow else "0",
            request.run or "",
            "-" if request.version is None else str(request.version),
            str(request.utc_offset_min),
            request.scope,
            ("1" if request.keep_scope else "0")
            + (request.action or "")
            + ("" if request.group is None else " " + request.group),
            *("-" if limit is None else str(limit) for limit in limits),
        ]
        for scoped in (q.concurrent, q.rates):
            args.append(str(len(scoped)))
            for level, value, limit in scoped:
                args += [level, value, str(limit)]
        args.append(str(len(request.lines)))
        for line in request.lines:
            args += [line.level, line.value, line.unit, line.period, str(line.limit)]
        for candidate in request.candidates:
            args += candidate_args(candidate)
        return args

    async def commit(
        self,
        reservation: Reservation,
        actual: Amounts,
        *,
        final_release: bool = False,
        known_only: bool = False,
        event: str | None = None,
    ) -> SettleResult:
        check_reservation(reservation)
        check_amounts("actual", actual)
        marks = alert_marks(reservation)
        args = [reservation.id, self.owner, encode_amounts(reservation.amounts)]
        args += [encode_amounts(actual), settle_flags(final_release, known_only)]
        args += [event or "-", str(self.outbox_bound), str(len(marks))]
        for field, bp, mark in marks:
            args += [field, str(bp), str(mark)]
        args += reservation.fields
        reply = await self._run("commit", reservation.tenant, args)
        await self._noted(reservation.tenant, event, reply)
        return settled(reply, crossings(reservation, reply[3:]))

    async def release(
        self, reservation: Reservation, *, known_only: bool = False, event: str | None = None
    ) -> SettleResult:
        check_reservation(reservation)
        args = [
            reservation.id,
            self.owner,
            encode_amounts(reservation.amounts),
            settle_flags(False, known_only),
            event or "-",
            str(self.outbox_bound),
            *reservation.fields,
        ]
        reply = await self._run("release", reservation.tenant, args)
        await self._noted(reservation.tenant, event, reply)
        return settled(reply)

    async def _noted(self, tenant: str, event: str | None, reply: list[str]) -> None:
        """Index the tenant's outbox after a settle that added to it (outbox_redis.py). The
        settle is done whatever happens here: a failed index write is left to the sender's
        rescan, as a crash between the two is."""
        if event is None or reply[1] != "1":
            return
        try:
            await self.outbox_noted(tenant)
        except REDIS.foreign as exc:
            log.warning("outbox of tenant=%s not indexed (the rescan finds it): %s", tenant, exc)

    async def balances(self, tenant: str) -> list[BalanceRow]:
        entries = await self._client.hgetall(layout.tenant_keys(tenant)[0])
        return balance_rows(cast(dict[str, str], entries))

    async def heartbeat(self) -> None:
        """Also checks the store's epoch: a flushed or replaced store fails closed from here."""
        await self._client.zadd(layout.INSTANCES, {self.owner: await self._now_ms()})
        await self._epoch.check(self._client)

    async def close(self) -> None:
        await self.scripts.close()
        await self._registering.close()
        if self._owns_client:
            await self._client.aclose()
