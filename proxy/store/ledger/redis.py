"""The Redis ledger: every decision is one Lua script, one round trip, atomic per tenant. The
same code serves one Redis and a Redis Cluster (store/redis/clients.py says what differs).

Scripts live in lua/*.lua; lua/common.lua and lua/audit.lua are prepended to each at load (and
candidates.lua and quotas.lua to reserve.lua). Tenant records and the audit trail are in
tenants_redis.py. They are called by SHA (`EVALSHA`, the SHA computed locally); the first time
Redis answers NOSCRIPT (a fresh or flushed server) all of them are loaded with `SCRIPT LOAD` in
one round trip (one for a whole burst: store/redis/flights.py) and the call is retried once. In a
cluster EVALSHA goes to the master owning the tenant's slot (its first key), and SCRIPT LOAD to
every master, so the one that answered NOSCRIPT (a new master, a promoted replica) has them all for
the retry. Time comes from Redis `TIME` inside the scripts, so instances with skewed clocks
agree on periods and deadlines.

Redis errors stop here: connection trouble becomes `LedgerUnavailable` (the caller applies
`fail_mode`; `maybe_ran` says whether the command may have run), anything else `LedgerError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Any, cast

from redis import exceptions as rex
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from proxy.core.errors import LedgerUnavailable, StoreUnsafe
from proxy.core.types import ReservationSettings
from proxy.store.ledger.base import (
    Amounts,
    BalanceRow,
    ExpiryAlerts,
    Reservation,
    ReserveRequest,
    ReserveResult,
    SettleResult,
    State,
    TenantStatus,
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
from proxy.store.ledger.reads_redis import RedisReads
from proxy.store.ledger.replies import (
    candidate_args,
    crossings,
    held_of,
    settle_flags,
    settled,
    status_of,
)
from proxy.store.ledger.sweep_redis import RedisSweep
from proxy.store.ledger.tenancy import TenantRecord
from proxy.store.ledger.tenants import AGGREGATE, GENERATION
from proxy.store.ledger.tenants_redis import RedisTenants
from proxy.store.redis import layout as keys
from proxy.store.redis.clients import boundary, is_cluster, open_client, refusal
from proxy.store.redis.flights import Flights
from proxy.store.redis.safety import Epoch, check_eviction
from proxy.store.redis.wire import ConnectTimeout, NotSent, ReplyError, Wire

SCRIPTS = {
    "reserve": ("common", "audit", "candidates", "quotas", "reserve"),
    "commit": ("common", "audit", "commit"),
    "release": ("common", "audit", "release"),
    "sweep": ("common", "audit", "sweep"),
    "tenant": ("common", "audit", "tenant"),
    "tenant_ledger": ("common", "audit", "tenant_ledger"),
    "lines": ("common", "lines"),
}
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Script:
    source: str
    sha: str

    @classmethod
    def load(cls, parts: Sequence[str]) -> _Script:
        lua = resources.files("proxy.store.ledger").joinpath("lua")
        source = "".join(lua.joinpath(f"{part}.lua").read_text() for part in parts)
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


class RedisLedger(RedisTenants, RedisReads, RedisSweep):
    """`Ledger` on one Redis or a Redis Cluster (>= 7.0), by the URL's scheme. `owner` names
    this instance in reservations and heartbeats; an owner silent for 3 * `heartbeat_interval_s`
    is presumed dead. At most `max_connections` commands are in flight (per node, in a
    cluster); more wait for a free connection, and one unanswered after `timeout_s` fails. The
    sweeper's pass is in sweep_redis.py."""

    def __init__(
        self,
        url: str,
        settings: ReservationSettings,
        owner: str | None = None,
        *,
        heartbeat_interval_s: float = 5.0,
        max_connections: int = 64,
        timeout_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.owner = check_owner(owner or instance_id())
        self.settings = settings
        self._cluster = is_cluster(url)
        if self._cluster:
            keys.due_key("", cluster=True)  # the slot table, built once before any call waits
        self._dead_after_ms = int(3 * heartbeat_interval_s * 1000)
        # A bounded pool: a burst waits for a free connection (up to the op timeout) instead of
        # opening one connection per concurrent call. One immediate retry covers a pooled
        # connection the server has closed; every script is safe to repeat (idempotent by id).
        self._client = open_client(
            url,
            max_connections=max_connections,
            retry=Retry(NoBackoff(), 1, (rex.ConnectionError,)),
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=timeout_s,
            health_check_interval=30,
        )
        self._scripts = {name: _Script.load(parts) for name, parts in SCRIPTS.items()}
        # The scripts' own round trips go over one pipelined connection (store/redis/wire.py); the
        # cluster
        # client routes them by slot instead. Everything else uses redis-py.
        self._wire = None if is_cluster(url) else Wire(url, timeout=timeout_s)
        s = settings
        self._common = (
            str(s.run_idle_ms),
            str(s.period_grace_ms),
            str(s.tombstone_ms),
            str(s.audit_retention_ms),
        )
        self._registered: set[str] = set()
        self._reloads: Flights[str] = Flights()
        self._registering: Flights[str] = Flights()
        self._shards_known: set[str] = set()
        self._epoch = Epoch()
        self.expiry_alerts: ExpiryAlerts | None = None

    async def connect(self, *, require_noeviction: bool = False) -> None:
        """Check the store is safe to keep a ledger in, and record its epoch
        (store/redis/safety.py). A store unreachable now is not fatal (the epoch is recorded on the
        first heartbeat that reaches it) unless `require_noeviction` asks for a check that cannot be
        made."""
        try:
            await check_eviction(self._client, require=require_noeviction)
            await self._epoch.check(self._client)
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

    async def _run(self, name: str, tenant: str, args: Sequence[str]) -> Any:
        script, due = self._scripts[name], keys.due_key(tenant, self._cluster)
        tenant_keys = [*keys.tenant_keys(tenant), due]
        if self._wire is not None:
            command = ("EVALSHA", script.sha, "7", *tenant_keys, *self._common, *args)
            return await self._on_wire(self._wire, command)
        await self._know_shard(due)
        call = partial(
            self._client.evalsha,
            script.sha,
            len(tenant_keys),
            *tenant_keys,
            *self._common,
            *args,
        )
        with boundary():
            try:
                return await call()
            except rex.NoScriptError:
                await self._reloads.run("scripts", self._load_scripts)
                return await call()

    async def _know_shard(self, due: str) -> None:
        """List a cluster's index key in `cy:v1:due_shards` when a script first writes it (once
        per key per process: calls racing the first do not wait for it, and the registry walk
        covers a tenant the sweeper misses meanwhile), so the sweeper reads every key that may
        hold a tenant."""
        if self._cluster and due not in self._shards_known:
            self._shards_known.add(due)
            try:
                with boundary():
                    await self._client.sadd(keys.DUE_SHARDS, due)
            except BaseException:
                self._shards_known.discard(due)
                raise

    async def _on_wire(self, wire: Wire, command: tuple[str, ...]) -> Any:
        """One script call on the pipelined connection: scripts reloaded on NOSCRIPT (a
        restarted or flushed server), and one more try after a lost connection (every script
        is safe to repeat: idempotent by reservation id), as the redis-py pool does. Both can
        happen to one call: the connection is lost, and the server it reconnects to is new."""
        reconnected = reloaded = maybe_ran = False
        while True:
            try:
                return await wire.call(*command)
            except ReplyError as exc:
                if reloaded or not str(exc).startswith("NOSCRIPT"):
                    raise refusal(str(exc)) from exc
                reloaded = True
                with boundary():
                    await self._reloads.run("scripts", self._load_scripts)
            except OSError as exc:  # ConnectionError, refused, unreachable; TimeoutError
                maybe_ran = maybe_ran or not isinstance(exc, (NotSent, ConnectTimeout))
                if reconnected or not isinstance(exc, ConnectionError):
                    message = f"the Redis ledger is unreachable: {exc}"
                    raise LedgerUnavailable(message, maybe_ran=maybe_ran) from exc
                reconnected = True

    async def _load_scripts(self) -> None:
        """SCRIPT LOAD every script in one round trip: a fresh server lacks them all. (A cluster
        pipeline cannot carry SCRIPT LOAD; there each goes to every master, all at once.)"""
        if isinstance(self._client, RedisCluster):
            loads = (self._client.script_load(s.source) for s in self._scripts.values())
            await asyncio.gather(*loads)
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for script in self._scripts.values():
                pipe.script_load(script.source)
            await pipe.execute()

    async def _register(self, tenant: str) -> None:
        """Put the tenant on the sweeper's list, once per tenant per process."""
        if tenant not in self._registered:
            with boundary():
                await self._registering.run(tenant, partial(self._add_tenant, tenant))

    async def _add_tenant(self, tenant: str) -> None:
        await self._client.sadd(keys.TENANTS, tenant)
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
            "1" if request.shadow else "0",
            request.run or "",
            "-" if request.version is None else str(request.version),
            str(request.utc_offset_min),
            request.scope,
            "1" if request.keep_scope else "0",
            *("-" if limit is None else str(limit) for limit in limits),
            str(len(q.concurrent)),
        ]
        for level, value, limit in q.concurrent:
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
    ) -> SettleResult:
        check_reservation(reservation)
        check_amounts("actual", actual)
        marks = alert_marks(reservation)
        args = [reservation.id, self.owner, encode_amounts(reservation.amounts)]
        args += [encode_amounts(actual), settle_flags(final_release, known_only), str(len(marks))]
        for field, bp, mark in marks:
            args += [field, str(bp), str(mark)]
        args += reservation.fields
        reply = await self._run("commit", reservation.tenant, args)
        return settled(reply, crossings(reservation, reply[3:]))

    async def release(self, reservation: Reservation, *, known_only: bool = False) -> SettleResult:
        check_reservation(reservation)
        args = [
            reservation.id,
            self.owner,
            encode_amounts(reservation.amounts),
            settle_flags(False, known_only),
            *reservation.fields,
        ]
        return settled(await self._run("release", reservation.tenant, args))

    async def balances(self, tenant: str) -> list[BalanceRow]:
        with boundary():
            entries = await self._client.hgetall(keys.tenant_keys(tenant)[0])
        return balance_rows(cast(dict[str, str], entries))

    async def counters(self, tenant: str) -> dict[str, int | str]:
        with boundary():
            entries = cast(dict[str, str], await self._client.hgetall(keys.tenant_keys(tenant)[0]))
        return {
            name: value if name.startswith("q|run|") and name.endswith("|day") else int(value)
            for name, value in entries.items()
            if name.startswith("q|") and not name.startswith((AGGREGATE, GENERATION))
        }

    async def set_status(self, tenant: str, status: TenantStatus) -> None:
        with boundary():
            await self._client.hset(keys.tenant_keys(tenant)[4], "status", status)

    async def get_tenant(self, tenant: str) -> TenantRecord | None:
        self._epoch.guard()
        return await super().get_tenant(tenant)

    async def set_clock_offset(self, tenant: str, offset_ms: int) -> None:
        """Also marks the tenant due now: its index entry is in the clock it had (the next pass
        sweeps it and indexes it again in the new one)."""
        await super().set_clock_offset(tenant, offset_ms)
        due = keys.due_key(tenant, self._cluster)
        await self._know_shard(due)
        with boundary():
            await self._client.zadd(due, {tenant: 0})

    async def heartbeat(self) -> None:
        """Also checks the store's epoch: a flushed or replaced store fails closed from here."""
        with boundary():
            await self._client.zadd(keys.INSTANCES, {self.owner: await self._now_ms()})
        await self._epoch.check(self._client)

    async def _now_ms(self) -> int:
        seconds, micros = await self._client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def close(self) -> None:
        await self._reloads.close()
        await self._registering.close()
        if self._wire is not None:
            await self._wire.close()
        await self._client.aclose()
