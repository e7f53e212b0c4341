"""What a finished call is charged, and the ledger call that records it.

The rule: never commit less than the evidence shows. Reported usage is charged even above the
reservation; without a report, streamed text is counted (with the prompt priced as reserved,
at the dearest price it may have been billed at, and its hosted tool calls and cache writes
charged as reserved: nothing else says how many ran); when the stream did not finish (the
client left and the upstream never sent its usage, or the upstream was cut), or the request
reached the provider and no answer came back (a timeout, a reset, the proxy stopping), or the
model may reason without streaming it, the charge is at least the reservation, because the
provider may have billed a generation we never saw. A report from a stream that did not finish
is only a floor: a provider that reports running usage on every chunk (vLLM) counts what it had
sent, not what it bills for the generation it went on with. A stream "finished" when its
`[DONE]` came, or when it ended cleanly right after OpenAI's usage chunk, which is sent last.
A 2xx stream without a single JSON event did not finish: the provider answered, and may bill.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from proxy.budget.call import Sent
from proxy.core.errors import LedgerError, LedgerUnavailable
from proxy.core.types import MAX_AMOUNT
from proxy.gateway import observe
from proxy.gateway.spill import Spill, Unbudgeted
from proxy.metering.pricing import Usage, amounts, settled_amounts
from proxy.store.ledger.base import Amounts, Ledger, Reservation, SettleResult

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened upstream, as far as charging is concerned: a 2xx answer, whole or
    streamed (an error status before any output is released without one)."""

    usage: Usage | None = None
    """What the provider reported, if it did."""
    counted_completion: int = 0
    """Completion tokens counted from relayed text."""
    complete: bool = True
    """The answer arrived whole."""
    streamed: bool = False
    """The answer was read as an SSE stream, so `counted_completion` counts its text. A whole
    body (even one answering a request for a stream) has none counted."""
    hidden_reasoning: bool = False
    """The model may bill reasoning tokens a stream never shows (model_rules.hides_reasoning),
    so text counted without a report is no measure of the bill."""


def charge_for(sent: Sent, reserved: Amounts, outcome: Outcome) -> dict[str, int]:
    """Amounts to commit per unit. `reserved` is what the reservation holds (empty when the
    call went unbudgeted)."""
    if outcome.usage is not None:
        usage = outcome.usage
        if outcome.counted_completion > usage.completion_tokens:
            usage = dataclasses.replace(usage, completion_tokens=outcome.counted_completion)
        charged = settled_amounts(sent.price, usage, reserved)
        if outcome.complete:
            return charged
        # A running report from a stream cut short: the generation may have gone on unseen.
        return {unit: max(amount, reserved.get(unit, 0)) for unit, amount in charged.items()}
    # No report says how the prompt split (cache writes, audio, images): it is charged at the
    # dearest price it may have been billed at, as it was reserved; nor what else was billed
    # (hosted tool calls, Anthropic cache writes): those are charged as reserved.
    counted = amounts(sent.reserved_price, sent.unreported_usage(outcome.counted_completion))
    if outcome.complete and outcome.streamed and not outcome.hidden_reasoning:
        return counted
    # No report, and no finished stream whose text was counted: at least what was reserved.
    return {unit: max(amount, reserved.get(unit, 0)) for unit, amount in counted.items()}


def held_amounts(reservation: Reservation | None) -> Amounts:
    """What a call holds: its reservation's amounts; for a call forwarded unbudgeted (the ledger
    was down), what it would have reserved; nothing without either."""
    if isinstance(reservation, Unbudgeted):
        return reservation.request.candidates[0].amounts if reservation.request else {}
    return reservation.amounts if reservation is not None else {}


def no_answer(sent: Sent, reservation: Reservation | None) -> dict[str, int]:
    """The charge of a call whose request may have reached the provider but whose answer never
    came back whole: at least what it holds, which is what the provider may bill."""
    return charge_for(sent, held_amounts(reservation), Outcome(complete=False))


async def settle(
    ledger: Ledger,
    reservation: Reservation | None,
    charge: Mapping[str, int] | None,
    spill: Spill | None = None,
    on_commit: Callable[[Reservation, SettleResult], None] | None = None,
) -> None:
    """Commit or release. A ledger failure here is logged with the amounts, never raised: the
    client already has its answer. An unreachable ledger leaves it to `spill`, when given.
    `on_commit` sees each commit's result (alerts.notifier announces the thresholds crossed)."""
    budgeted = reservation is not None and not isinstance(reservation, Unbudgeted)
    if charge is not None:
        # A usage report no ledger can hold (2**52 units and up) is charged the most one can,
        # rather than refused and the reservation left held until the sweeper (nor logged as a
        # number the call line cannot write).
        charge = {unit: min(amount, MAX_AMOUNT - 1) for unit, amount in charge.items()}
    observe.settled(reservation.tenant if budgeted and reservation else None, charge)
    if reservation is None:
        return
    if isinstance(reservation, Unbudgeted):
        # Forwarded while the ledger was down (fail_mode: open): the charge waits in the spill;
        # without one, a release of the id (its reserve may have run after all: spill.py).
        if reservation.spill is not None and reservation.request:
            if charge is not None:
                reservation.spill.add(reservation.request, charge)
            else:
                reservation.spill.add_abandoned(reservation.request)
        return
    try:
        if charge is None:
            await observe.timed("release", ledger.release(reservation))
        else:
            result = await observe.timed("commit", ledger.commit(reservation, charge))
            if on_commit is not None:
                on_commit(reservation, result)
    except LedgerError as exc:
        if spill is not None and isinstance(exc, LedgerUnavailable):
            spill.add_settle(reservation, charge)
            log.warning("settle of reservation=%s spilled: %s", reservation.id, exc)
            return
        log.error(
            "settle failed for tenant=%s reservation=%s charge=%s: %s",
            reservation.tenant,
            reservation.id,
            dict(charge) if charge is not None else "release",
            exc,
        )
