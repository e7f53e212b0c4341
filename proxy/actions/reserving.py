"""From a checked ask to the ledger and back: the lines an action reserves on, the reserve
request, what a denial answers, and the Reservation a commit or release settles, rebuilt from
the store's record. No I/O."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping

from proxy.actions.asks import Ask
from proxy.budget.decision import DECISION, REMAINING
from proxy.budget.directory import TenantConfig
from proxy.budget.scopes import Scope, budget_lines, parse_path
from proxy.core.errors import BadRequest, BudgetExceeded, Conflict, Forbidden, NotFound
from proxy.core.types import CALL_UNITS, RISK_POINTS, Unit
from proxy.metering.pricing import format_amount
from proxy.policy.runtime import Plan
from proxy.store.ledger.base import (
    BudgetLine,
    Candidate,
    LineState,
    Quotas,
    Reservation,
    ReservationRecord,
    ReserveRequest,
    ReserveResult,
)

ID = re.compile(r"act_[0-9a-f]{32}")
"""`act_` and 128 random bits: an id is unguessable, and only ever looked up under the caller's
tenant."""


def new_id() -> str:
    return f"act_{secrets.token_hex(16)}"


def check_id(text: str) -> str:
    """A reservation id from a path; anything that is not one is not found."""
    if not ID.fullmatch(text):
        raise not_found(text)
    return text


def not_found(rid: str) -> NotFound:
    return NotFound(
        f"No reservation {rid!r} for this caller: it was never made, was made by another "
        "tenant or another scope of this one (settle it with the scope headers that reserved "
        "it, with a key whose pinned levels allow it), or was settled longer ago than "
        "reservations.tombstone_seconds.",
        code="reservation_not_found",
    )


def check_scope(scope: Scope, record: ReservationRecord) -> None:
    """404 unless the caller names every budget level the reservation holds, with the same
    value: only the scope that reserved it reads or settles it (no other agent or workflow of
    the tenant can spend or free its budget)."""
    for field in record.fields:
        level, value, _unit, _period = field.split("|")
        if scope.values.get(level) != value:
            raise not_found(record.id)


def action_lines(plan: Plan, scope: Scope, unit: Unit | None = None) -> list[BudgetLine]:
    """The plan's action budgets (of `unit`, or every one) on the levels the caller names."""
    return [
        BudgetLine(b.level, scope.values[b.level], b.unit, b.period, b.limit)
        for b in plan.action_budgets
        if b.level in scope.values and (unit is None or b.unit == unit)
    ]


def lines_for(
    plan: Plan, scope: Scope, unit: Unit, overrides: Mapping[str, int] | None = None
) -> list[BudgetLine]:
    """The lines an ask of `unit` reserves on: the action budgets of `unit`, or for USD (an
    action priced in USD) the plan's USD call budgets with the tenant's `overrides`, as an LLM
    call's. 400 when the caller names no level the plan budgets in that unit (nothing would
    hold the action back)."""
    if unit in CALL_UNITS:
        lines = [line for line in budget_lines(plan, scope, overrides) if line.unit == unit]
        budgets = plan.budgets
    else:
        lines, budgets = action_lines(plan, scope, unit), plan.action_budgets
    if lines:
        return lines
    budgeted = [b.level for b in budgets if b.unit == unit]
    where = (
        f"only on {', '.join(budgeted)}, and this call names none of them"
        if budgeted
        else "on no level"
    )
    raise BadRequest(
        f"Plan {plan.name!r} budgets {unit} {where}, so there is nothing to reserve against. "
        f"Name a budgeted level in the scope headers, or ask the operator for {unit} "
        f"{'budgets' if unit in CALL_UNITS else 'action_budgets'}.",
        code="unit_not_budgeted",
    )


def reserve_request(tenant: TenantConfig, scope: Scope, ask: Ask) -> ReserveRequest:
    """What the ledger reserves: `ask.amount` on every action budget line of its unit."""
    return ReserveRequest(
        tenant=scope.tenant,
        reservation_id=new_id(),
        lines=lines_for(tenant.plan, scope, ask.unit, tenant.overrides),
        candidates=[Candidate({ask.unit: ask.amount})],
        shadow=tenant.mode == "shadow",
        run=scope.run,
        quotas=Quotas(),
        version=tenant.version,
        utc_offset_min=tenant.utc_offset_min(),
        scope=scope.path(),
        keep_scope=True,
        alerts=tenant.alerts,
        ttl_ms=ask.ttl_ms,
        action=ask.action,
    )


def may_settle(scope: Scope, record: ReservationRecord) -> bool:
    """Whether this caller may read, commit or release the reservation: its key could have made
    it, i.e. every level the key pins has the same value in the scope it was reserved with. A
    key that pins nothing (and sidecar mode, where the app names every level) reaches all of its
    tenant's. A record that kept no scope (one an earlier release made) is refused to a pinned
    key: it fails closed."""
    if not scope.pins:
        return True
    if record.scope is None:
        return False
    reserved_by = parse_path(record.scope)
    return all(reserved_by.get(level) == value for level, value in scope.pins.items())


def refusal(result: ReserveResult, ask: Ask) -> Forbidden | BudgetExceeded | None:
    """What an enforced denial answers (403 for a suspended or closed tenant, 402 for a
    budget), or None when the reservation was made (or, in shadow mode, would not block)."""
    if result.status != "active":
        return Forbidden(
            f"Tenant is {result.status}: no new reservations are admitted. Ask the operator to "
            "reactivate it.",
            type=f"tenant_{result.status}",
        )
    if result.allowed:
        return None
    state = result.lines[result.denied_by or 0]
    line = state.line
    scope = "tenant" if line.level == "tenant" else f"{line.level} {line.value!r}"
    period = "" if line.period == "none" else f" this {line.period}"
    what = f"action {ask.action!r}" if ask.action else "this reservation"
    message = (
        f"Budget exceeded on {scope}: {remaining_text(state)} remaining of "
        f"{format_amount(line.limit, line.unit)}{period}, and {what} needs "
        f"{format_amount(ask.amount, ask.unit)}. Ask the operator to raise the {line.level} "
        f"{'budget' if line.unit in CALL_UNITS else 'action budget'}."
    )
    headers = {DECISION: "DENY", REMAINING: remaining_text(state)}
    return BudgetExceeded(message, headers=headers)


def remaining_text(state: LineState) -> str:
    return format_amount(state.remaining, state.line.unit)


def reservation_of(record: ReservationRecord, config: TenantConfig) -> Reservation:
    """What the ledger settles, from the store's record: its lines, amounts and held
    counters, with the plan's limits for the alert thresholds its commit may cross."""
    limits = tuple(_limit(config, field) for field in record.fields)
    alerting = bool(config.alerts)
    return Reservation(
        config.id,
        record.id,
        record.fields,
        record.amounts,
        record.held,
        limits if alerting else (),
        config.alerts if alerting else (),
    )


def _limit(config: TenantConfig, field: str) -> int:
    """The line's limit in force: a USD line's is the tenant's override, as the ledger's."""
    level, _value, unit, _period = field.split("|")
    budget = config.plan.budget_of(level, unit)
    return 0 if budget is None else budget.limit_with(config.overrides)


def unit_of(record: ReservationRecord) -> str:
    """An action reservation holds one unit."""
    return next(iter(record.amounts), RISK_POINTS)


def check_commit(record: ReservationRecord) -> None:
    """409 for a released reservation: a release, once answered, is final, and so is the
    sweeper's release of one that expired (`on_expiry: release`); the ledger's commit refuses
    both too, atomically, when one lands between this check and the commit. 404 for a record the
    store no longer had when the commit ran (its tombstone expired meanwhile)."""
    if record.state == "MISSING":
        raise not_found(record.id)
    if record.state == "RELEASED":
        raise Conflict(
            f"Reservation {record.id!r} was released: the action was reported as not done. "
            "Reserve again for a new attempt.",
            code="reservation_released",
        )
    if record.state == "EXPIRED_RELEASED":
        raise Conflict(
            f"Reservation {record.id!r} expired and was released (reservations.on_expiry: "
            "release): it holds nothing any more. Reserve again for a new attempt.",
            code="reservation_released",
        )


def commit_amount(record: ReservationRecord, amount: int | None) -> int:
    """What a commit charges: the amount the caller states, at most what it reserved (an action
    priced up front cannot cost more than its reservation, unlike an LLM call, whose provider
    bills what it bills), or the reserved amount when it states none. Above is 400, before
    anything is written."""
    reserved = record.amounts.get(unit_of(record), 0)
    if amount is None:
        return reserved
    if amount > reserved:
        unit = unit_of(record)
        raise BadRequest(
            f"'amount' {format_amount(amount, unit)} is above the "
            f"{format_amount(reserved, unit)} reservation {record.id!r} holds, so nothing was "
            f"committed. Commit at most {reserved:d}, and reserve anything beyond it separately.",
            code="amount_above_reservation",
            param="amount",
        )
    return amount


def check_release(record: ReservationRecord) -> None:
    """409 for a charged reservation; 404 for a record the store no longer had when the release
    ran (its tombstone expired meanwhile)."""
    if record.state == "MISSING":
        raise not_found(record.id)
    if record.state in ("COMMITTED", "EXPIRED_CHARGED"):
        how = "committed" if record.state == "COMMITTED" else "charged when it expired"
        raise Conflict(
            f"Reservation {record.id!r} was already {how}; a release cannot undo a charge.",
            code="reservation_settled",
        )
