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

Every call settles the same way, whatever ended it (a whole answer, a stream, an error status,
no answer): `Flight.settle` works out the charge, `Settler` writes it (or spills it, or
releases the reservation, with the call's usage event when events are on: usage_events.py) and
then emits CallSettled (events.py) for the log line, the metrics and the alerts.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from proxy.budget.call import Sent
from proxy.budget.decision import Decision
from proxy.core.errors import LedgerError, LedgerUnavailable
from proxy.core.types import MAX_AMOUNT
from proxy.gateway.events import CallSettled, Events, Timings
from proxy.gateway.metrics import Metrics, timed
from proxy.gateway.observe import request_id_of
from proxy.gateway.spill import Spill, Unbudgeted
from proxy.gateway.usage_events import call_json
from proxy.metering.pricing import Usage, amounts, settled_amounts
from proxy.policy.runtime import Policy
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


@dataclass(frozen=True, slots=True)
class Settler:
    """Writes a call's charge, then tells the subscribers (CallSettled)."""

    ledger: Ledger
    spill: Spill
    events: Events
    metrics: Metrics | None = None

    async def settle(
        self, flight: Flight, charge: Mapping[str, int] | None, usage: Usage | None = None
    ) -> None:
        """Commit `charge` (None: release). A ledger failure here is logged with the amounts,
        never raised: the client already has its answer. With usage events on, the ledger
        writes the call's event (`usage`: what the provider reported) in the same step."""
        if charge is not None:
            # A usage report no ledger can hold (2**52 units and up) is charged the most one
            # can, rather than refused and the reservation left held until the sweeper (nor
            # logged as a number the call line cannot write).
            charge = {unit: min(amount, MAX_AMOUNT - 1) for unit, amount in charge.items()}
        reservation = flight.reservation
        budgeted = reservation is not None and not isinstance(reservation, Unbudgeted)
        timings = flight.timings()
        result = None
        try:
            outbox = usage_event(flight, usage)
            result = await write(
                self.ledger, reservation, charge, self.spill, self.metrics, event=outbox
            )
        finally:
            tenant = reservation.tenant if budgeted and reservation else None
            settled = CallSettled(flight.request, tenant, charge, result, timings, flight.usage)
            self.events.emit(settled)


def usage_event(flight: Flight, usage: Usage | None) -> str | None:
    """The call's part of its usage event (usage_events.py); None when events are off or
    nothing was reserved (shadow mode). A call forwarded unbudgeted has one too: its charge is
    written with it once the ledger answers (spill.py)."""
    reservation = flight.reservation
    if not flight.policy.events.sinks or reservation is None:
        return None
    return call_json(
        request_id=request_id_of(flight.request),
        endpoint=flight.sent.endpoint.name,
        model=flight.asked_model,
        sent_model=flight.sent.model,
        usage=usage,
        decision=flight.verdict.kind,
        rule=flight.verdict.rule,
        fields=reservation.fields,
    )


@dataclass(slots=True)
class Flight:
    """One admitted call on its way upstream: what it sent and holds, and the one way it
    settles."""

    request: web.Request
    sent: Sent
    verdict: Decision
    reservation: Reservation | None
    """None: shadow mode held nothing; Unbudgeted: forwarded while the ledger was down."""
    policy: Policy
    """The policy it was admitted under."""
    settler: Settler
    asked_model: str = ""
    """The model the caller asked for (`sent.model` is what went upstream)."""
    sent_at: float | None = None
    answered_at: float | None = None
    usage: Usage | None = None
    """What the provider reported, once the call settled on a report."""

    def sending(self) -> None:
        """The call goes upstream now (the start of its upstream latency)."""
        self.sent_at = time.monotonic()

    def answered(self) -> None:
        """The upstream's response headers arrived (time to first byte)."""
        self.answered_at = time.monotonic()

    def timings(self) -> Timings | None:
        if self.sent_at is None:
            return None
        first = None if self.answered_at is None else self.answered_at - self.sent_at
        total = time.monotonic() - self.sent_at
        return Timings(self.sent.endpoint.name, first, total, self.sent_at)

    async def settle(self, outcome: Outcome) -> dict[str, int]:
        """Charge what `outcome` shows the call cost; the charge."""
        charge = charge_for(self.sent, held_amounts(self.reservation), outcome)
        self.usage = outcome.usage
        await self.settler.settle(self, charge, outcome.usage)
        return charge

    async def release(self) -> None:
        """Release the call's reservation: the provider refused the call, or never got it."""
        await self.settler.settle(self, None)


async def write(
    ledger: Ledger,
    reservation: Reservation | None,
    charge: Mapping[str, int] | None,
    spill: Spill,
    metrics: Metrics | None = None,
    *,
    event: str | None = None,
) -> SettleResult | None:
    """Commit or release; the commit's result. A ledger failure here is logged with the
    amounts, never raised; an unreachable ledger leaves it (with `event`) to `spill`."""
    if reservation is None:
        return None
    if isinstance(reservation, Unbudgeted):
        # Forwarded while the ledger was down (fail_mode: open): the charge waits in the spill;
        # without one, a release of the id (its reserve may have run after all: spill.py).
        if reservation.spill is not None and reservation.request:
            if charge is not None:
                reservation.spill.add(reservation.request, charge, event)
            else:
                reservation.spill.add_abandoned(reservation.request)
        return None
    try:
        if charge is None:
            await timed(metrics, "release", ledger.release(reservation, event=event))
            return None
        return await timed(metrics, "commit", ledger.commit(reservation, charge, event=event))
    except LedgerError as exc:
        if isinstance(exc, LedgerUnavailable):
            spill.add_settle(reservation, charge, event)
            log.warning("settle of reservation=%s spilled: %s", reservation.id, exc)
            return None
        log.error(
            "settle failed for tenant=%s reservation=%s charge=%s: %s",
            reservation.tenant,
            reservation.id,
            dict(charge) if charge is not None else "release",
            exc,
        )
        return None
