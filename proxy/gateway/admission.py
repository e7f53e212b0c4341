"""Admission: who calls, whether their tenant may spend, and what a store failure means, decided
once for every route that spends or shows a budget (the pipeline, the reservation API, the MCP
front).

When the store a step needs fails it, one table decides, most specific row first (as httpx's
`map_httpcore_exceptions` maps transport errors at one boundary):

    store error          policy                   the request
    LedgerEpochLost      on_store_lost: shadow    FORWARD: goes on without the store
    LedgerEpochLost      (otherwise)              LOST: 503 ledger_epoch_lost (the store's data
                                                  is gone: fail_mode open does not forward)
    LedgerUnavailable    fail_mode: open          FORWARD
    LedgerUnavailable    fail_mode: closed        REFUSE: 503, retry shortly
    any other            -                        raised as it is: an error, not an outage

FORWARD means: the tenant's settings and status as the policy has them, no replay protection,
and a reserve forwarded unbudgeted under its tenant's local rate (429 `ledger_down_rate` beyond
it; spill.py). A step that cannot go on without its store never forwards (`Step.may_forward`):
an action (it could never be settled), and the key lookup (nothing else identifies a caller).

A tenant's settings are cached (budget/directory.py); the reserve script refuses a request built
from settings that changed since (stale), and `fresh` reloads them once and redoes it.

Standing: budgeted calls and action reservations have their tenant's status checked inside the
reserve script, atomically with everything else. The routes that reserve nothing (the model
list, passthrough paths, an actions balance) cost the provider account or show the ledger all
the same, so `check_active` reads the status from the store on every call: one round trip,
never a cached answer, so a suspension made through any replica counts on the next call
everywhere. Settling what was admitted before a suspension is not refused: its real spend must
still be recorded.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from proxy.budget.directory import TenantConfig, inactive_tenant, unknown_tenant
from proxy.budget.scopes import Scope
from proxy.core.errors import (
    AmountOutOfRange,
    BadRequest,
    ClientError,
    LedgerEpochLost,
    LedgerError,
    LedgerUnavailable,
    QuotaExceeded,
    ServiceUnavailable,
)
from proxy.gateway import identity, observe, replay
from proxy.gateway.body import read_limited
from proxy.gateway.context import Runtime
from proxy.gateway.metrics import Metrics, timed
from proxy.gateway.settle import write
from proxy.gateway.spill import FailOpen
from proxy.policy.runtime import Policy
from proxy.store.ledger.base import (
    Ledger,
    Reservation,
    ReserveRequest,
    ReserveResult,
    SettleResult,
    TenantStatus,
)
from proxy.store.replays import ReplayStore

log = logging.getLogger(__name__)

T = TypeVar("T")


class Fallback(enum.Enum):
    """What a request gets when a store it needs fails it (the module's table)."""

    FORWARD = "forward"
    REFUSE = "refuse"
    LOST = "lost"


def _on_store_lost_shadow(policy: Policy) -> bool:
    return policy.on_store_lost == "shadow"


def _fail_open(policy: Policy) -> bool:
    return policy.fail_mode == "open"


def _always(policy: Policy) -> bool:
    return True


_TABLE: tuple[tuple[type[LedgerError], Callable[[Policy], bool], Fallback], ...] = (
    (LedgerEpochLost, _on_store_lost_shadow, Fallback.FORWARD),
    (LedgerEpochLost, _always, Fallback.LOST),
    (LedgerUnavailable, _fail_open, Fallback.FORWARD),
    (LedgerUnavailable, _always, Fallback.REFUSE),
)


def decide(exc: LedgerError, policy: Policy, *, may_forward: bool = True) -> Fallback | None:
    """The table's row for `exc` under `policy`; None when `exc` is not the store being down or
    lost. Without `may_forward`, FORWARD rows are passed over."""
    for kind, applies, fallback in _TABLE:
        if not may_forward and fallback is Fallback.FORWARD:
            continue
        if isinstance(exc, kind) and applies(policy):
            return fallback
    return None


@dataclass(frozen=True, slots=True)
class Step:
    """One store operation a request waits on, and what its refusal tells the client."""

    store: str
    refused: str
    """What did not happen, said after "so"."""
    may_forward: bool = True
    code: str = "ledger_unavailable"
    any_error: bool = False
    """Every error of its store refuses (not only the store being down)."""

    def refusal(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"The {self.store} is unreachable, so {self.refused}. Retry shortly.",
            retry_after=2,
            code=self.code,
        )


CALL = Step("budget ledger", "the call was not forwarded")
STANDING = Step(
    "budget ledger", "the tenant's status could not be checked and the call was not forwarded"
)
REPLAY = Step("idempotency store", "the call was not forwarded")
ACTION = Step("budget ledger", "nothing was reserved or settled", may_forward=False)
"""The reservation API: the ledger is never bypassed (an action reserved without it could
never be settled)."""
ACTION_REPLAY = Step("idempotency store", "the call was not forwarded", may_forward=False)
KEY_LOOKUP = Step(
    "key store",
    "the caller could not be identified",
    may_forward=False,
    code="key_store_unavailable",
    any_error=True,
)


def lost(exc: LedgerEpochLost) -> ServiceUnavailable:
    """The answer while the ledger's epoch is lost (LOST)."""
    return ServiceUnavailable(str(exc), retry_after=30, code="ledger_epoch_lost")


def refusal(exc: LedgerError, policy: Policy, step: Step) -> Exception:
    """What the client gets when `step` does not go on without its store: a 503, or `exc`
    itself when it is not the store being down or lost."""
    fallback = decide(exc, policy, may_forward=False)
    if isinstance(exc, LedgerEpochLost) and fallback is Fallback.LOST:
        return lost(exc)
    if fallback is Fallback.REFUSE or step.any_error:
        return step.refusal()
    return exc


def go_on(exc: LedgerError, policy: Policy, step: Step) -> None:
    """Return when the request goes on without the store (FORWARD); raise what the client gets
    otherwise."""
    if decide(exc, policy, may_forward=step.may_forward) is not Fallback.FORWARD:
        raise refusal(exc, policy, step) from None


class Admission:
    """Identify → admit: the steps every route that spends takes, with their stores and the
    decisions above."""

    def __init__(
        self,
        runtime: Runtime,
        ledger: Ledger,
        callers: identity.Callers,
        replays: ReplayStore,
        fail_open: FailOpen,
        metrics: Metrics | None = None,
    ) -> None:
        self.runtime, self.ledger, self.callers = runtime, ledger, callers
        self._replays, self._fail_open, self._metrics = replays, fail_open, metrics

    @property
    def policy(self) -> Policy:
        """The policy in force (a reload swaps it)."""
        return self.runtime.policy

    async def identify(self, request: web.Request) -> Scope:
        """Who calls (identity.py), its end user's id as kept (budget/end_users.py); 503 when
        the key store cannot say."""
        try:
            scope = await identity.identify(request, self.policy, self.callers)
        except LedgerError as exc:
            log.error("key store unavailable (%s): refusing gateway calls", exc)
            raise refusal(exc, self.policy, KEY_LOOKUP) from None
        return self.runtime.users.in_scope(scope)

    async def observed(
        self, request: web.Request, endpoint: str, handling: Awaitable[web.StreamResponse]
    ) -> web.StreamResponse:
        """`handling` as one budgeted call of `endpoint` (the MCP front's tools/call), observed
        as the LLM calls are: its call line and metrics, in flight until it settles
        (observe.py)."""
        return await observe.observed(request, endpoint, handling)

    async def body(self, request: web.Request, limit: int) -> bytes:
        """The request body: at most `limit` bytes, within `timeouts.read_request`."""
        return await read_limited(request, limit, self.policy.timeouts.read_request)

    async def tenant(self, name: str, step: Step = CALL) -> TenantConfig:
        """The tenant's plan and settings; from the policy alone when the store is down and
        the table says FORWARD. 403 for a tenant that is not admitted."""
        directory = self.runtime.directory
        try:
            config = await directory.get(name)
        except LedgerError as exc:
            go_on(exc, self.policy, step)
            config = directory.fallback(name)
        if config is None:
            raise unknown_tenant(name)
        return config

    async def check_active(self, name: str) -> None:
        """403 unless the tenant is admitted and active (module docstring: standing)."""
        status = await self._status(name)
        if status is None:
            raise unknown_tenant(name)
        if status != "active":
            raise inactive_tenant(status)

    async def _status(self, name: str) -> TenantStatus | None:
        directory = self.runtime.directory
        try:
            return await directory.status(name)
        except LedgerError as exc:
            go_on(exc, self.policy, STANDING)
        return None if directory.fallback(name) is None else "active"

    async def claim(
        self,
        request: web.Request,
        scope: Scope,
        raw: bytes,
        *,
        step: Step = REPLAY,
        body_key: str | None = None,
    ) -> replay.Claim | web.Response:
        """The call's idempotency claim, or the answer a retry gets (replay.py)."""
        try:
            return await replay.begin(self._replays, request, scope, raw, body_key=body_key)
        except LedgerUnavailable as exc:
            go_on(exc, self.policy, step)
            log.error(
                "IDEMPOTENCY STORE UNAVAILABLE (%s): forwarding without replay protection", exc
            )
            return replay.unprotected(scope)

    async def fresh(
        self,
        name: str,
        tenant: TenantConfig,
        attempt: Callable[[TenantConfig], Awaitable[T]],
        stale: Callable[[T], bool],
        *,
        step: Step = CALL,
        what: str,
    ) -> T:
        """`attempt` with the tenant's settings. When the store says they changed since they
        were cached (a plan change, an override: `stale`), reload them once and redo it;
        changed again meanwhile is 503 tenant_changing."""
        outcome = await attempt(tenant)
        if not stale(outcome):
            return outcome
        self.runtime.forget_tenant(name)
        outcome = await attempt(await self.tenant(name, step))
        if not stale(outcome):
            return outcome
        raise ServiceUnavailable(
            f"The tenant's settings changed twice while {what}; retry.",
            retry_after=1,
            code="tenant_changing",
        )

    async def reserve(self, request: ReserveRequest) -> ReserveResult | None:
        """A call's reserve: one ledger round trip. None: the ledger is down or lost and the
        call goes on unbudgeted (the table said FORWARD, and its tenant's local rate allows)."""
        try:
            return await timed(self._metrics, "reserve", self.ledger.reserve(request))
        except AmountOutOfRange as exc:
            raise BadRequest(
                f"This call is too large to budget ({exc}); lower n or the completion limit.",
                code="call_too_large",
            ) from None
        except LedgerError as exc:
            self._unbudgeted(request, exc)
            return None

    def _unbudgeted(self, request: ReserveRequest, exc: LedgerError) -> None:
        """Go on unbudgeted, or raise what the client gets: the table's 503, or 429
        ledger_down_rate once the tenant's local bucket is empty. A refused reserve that may
        have run all the same is released by its id later (spill.py)."""
        try:
            go_on(exc, self.policy, CALL)
            self._within_local_rate(request)
        except ClientError:
            if isinstance(exc, LedgerUnavailable) and exc.maybe_ran:
                self._fail_open.spill.add_abandoned(request)
            raise
        log.error(
            "LEDGER UNAVAILABLE (%s): forwarding tenant=%s UNBUDGETED under %s, estimate=%s",
            exc,
            request.tenant,
            "on_store_lost: shadow" if isinstance(exc, LedgerEpochLost) else "fail_mode: open",
            dict(request.candidates[0].amounts),
        )

    def _within_local_rate(self, request: ReserveRequest) -> None:
        wait = self._fail_open.buckets.take(request.tenant, request.quotas.requests_per_minute)
        if wait:
            raise QuotaExceeded(
                "The budget ledger is unreachable; this tenant's calls are rate limited locally "
                "until it is back. Retry shortly.",
                quota="ledger_down_rate",
                headers={"Retry-After": str(math.ceil(wait))},
            )

    async def store_op(
        self, op: str, call: Awaitable[T], *, abandoned: ReserveRequest | None = None
    ) -> T:
        """One store operation of the reservation API, timed: the store down or lost is 503
        whatever fail_mode says (ACTION); a sum the ledger could no longer hold exactly is 400
        (nothing was written). A reserve (`abandoned`) that may have run all the same is
        released by its id later (spill.py)."""
        try:
            return await timed(self._metrics, op, call)
        except AmountOutOfRange:
            raise BadRequest(
                f"This {op} would take a budget line's spent, reserved or credit beyond the "
                "2**53 - 1 units the ledger holds exactly, so nothing was written. Use smaller "
                "amounts.",
                code="amount_out_of_range",
            ) from None
        except LedgerError as exc:
            if abandoned is not None and isinstance(exc, LedgerUnavailable) and exc.maybe_ran:
                self._fail_open.spill.add_abandoned(abandoned)
            raise refusal(exc, self.policy, ACTION) from None

    async def settle(
        self,
        reservation: Reservation | None,
        charge: Mapping[str, int] | None,
        *,
        event: str | None = None,
    ) -> SettleResult | None:
        """Commit `charge` (None: release) as the pipeline settles a call: never raised; an
        unreachable ledger leaves it to the spill, written once the ledger is back
        (settle.write). For settles that may not fail the client's answer (an MCP tool call's,
        whose answer is already on its way)."""
        spill = self._fail_open.spill
        return await write(self.ledger, reservation, charge, spill, self._metrics, event=event)


ADMISSION = web.AppKey("admission", Admission)
