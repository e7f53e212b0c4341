"""Admission's one table (gateway/admission.py): what a request gets when a store it needs fails
it, by the store's error and the policy's fail_mode and on_store_lost. The routes' behaviour on a
store that is down or lost is tested end to end elsewhere (tests/processes/test_faults.py,
test_alert_events.py, test_reserve_timeout.py); this is the table itself."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from support import policy

from proxy.core.errors import (
    AmountOutOfRange,
    LedgerEpochLost,
    LedgerError,
    LedgerUnavailable,
    ServiceUnavailable,
)
from proxy.gateway import admission
from proxy.gateway.admission import ACTION, CALL, KEY_LOOKUP, REPLAY, STANDING, Fallback

FORWARD, REFUSE, LOST = Fallback.FORWARD, Fallback.REFUSE, Fallback.LOST
DOWN, GONE = LedgerUnavailable("unreachable"), LedgerEpochLost("epoch lost")

TABLE = [
    # error, fail_mode, on_store_lost, what a call gets, what a step that may not forward gets
    (DOWN, "closed", "closed", REFUSE, REFUSE),
    (DOWN, "closed", "shadow", REFUSE, REFUSE),
    (DOWN, "open", "closed", FORWARD, REFUSE),
    (DOWN, "open", "shadow", FORWARD, REFUSE),
    (GONE, "closed", "closed", LOST, LOST),
    (GONE, "open", "closed", LOST, LOST),
    (GONE, "closed", "shadow", FORWARD, LOST),
    (GONE, "open", "shadow", FORWARD, LOST),
    (AmountOutOfRange("too big"), "open", "shadow", None, None),
    (LedgerError("refused a command"), "open", "shadow", None, None),
]


@pytest.mark.parametrize(("exc", "fail_mode", "on_store_lost", "call", "strict"), TABLE)
def test_each_store_error_and_mode_maps_to_one_outcome(
    tmp_path: Path,
    exc: LedgerError,
    fail_mode: str,
    on_store_lost: str,
    call: Fallback | None,
    strict: Fallback | None,
) -> None:
    pol = dataclasses.replace(
        policy(tmp_path, "tenant: {limit: 50, period: month}"),
        fail_mode=fail_mode,
        on_store_lost=on_store_lost,
    )
    assert admission.decide(exc, pol) is call
    assert admission.decide(exc, pol, may_forward=False) is strict


def test_what_each_step_answers_when_it_refuses(tmp_path: Path) -> None:
    """The 503s, as the client reads them; a lost store is its own 503 whatever the step."""
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")  # fail_mode: closed
    answers = {
        step: admission.refusal(DOWN, pol, step) for step in (CALL, STANDING, REPLAY, ACTION)
    }
    assert all(isinstance(a, ServiceUnavailable) and a.status == 503 for a in answers.values())
    assert str(answers[CALL]) == (
        "The budget ledger is unreachable, so the call was not forwarded. Retry shortly."
    )
    assert "idempotency store is unreachable" in str(answers[REPLAY])
    assert "nothing was reserved or settled" in str(answers[ACTION])
    lost = admission.refusal(GONE, pol, CALL)
    assert isinstance(lost, ServiceUnavailable) and lost.code == "ledger_epoch_lost"
    refused = admission.refusal(LedgerError("refused a command"), pol, KEY_LOOKUP)
    assert isinstance(refused, ServiceUnavailable) and refused.code == "key_store_unavailable"
    plain = LedgerError("refused a command")
    assert admission.refusal(plain, pol, CALL) is plain


def test_go_on_returns_only_where_the_table_forwards(tmp_path: Path) -> None:
    base = policy(tmp_path, "tenant: {limit: 50, period: month}")
    fail_open = dataclasses.replace(base, fail_mode="open")
    admission.go_on(DOWN, fail_open, CALL)  # forwards: no exception
    with pytest.raises(ServiceUnavailable):
        admission.go_on(DOWN, fail_open, ACTION)  # an action never goes on without its ledger
    with pytest.raises(ServiceUnavailable):
        admission.go_on(DOWN, base, CALL)
