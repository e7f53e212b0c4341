"""ALLOW / ALLOW_WITH_CAPS / DENY, and what the client sees of each.

| decision                  | HTTP         | headers / body                                        |
|---------------------------|--------------|-------------------------------------------------------|
| ALLOW                     | upstream's   | X-Cycles-Decision: ALLOW, X-Cycles-Remaining          |
| DENY, budget              | 402          | type budget_exceeded naming the scope; x-should-retry |
| tenant suspended / closed | 403          | type tenant_suspended / tenant_closed                 |

In shadow mode nothing is blocked: the client gets ALLOW and X-Cycles-Shadow-Decision says what
enforcement would have done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from proxy.errors import BudgetExceeded, Forbidden
from proxy.ledger.base import LineState, ReserveResult
from proxy.pricing import format_amount

DECISION = "X-Cycles-Decision"
REMAINING = "X-Cycles-Remaining"
SHADOW = "X-Cycles-Shadow-Decision"


@dataclass(frozen=True, slots=True)
class Decision:
    kind: str
    """ALLOW, ALLOW_WITH_CAPS or DENY: what the proxy did."""
    would_be: str
    """What enforcement decides, e.g. `DENY budget run` (differs from `kind` only in shadow)."""
    headers: dict[str, str] = field(default_factory=dict)


def tightest(lines: Sequence[LineState]) -> LineState | None:
    """The line closest to running out, as a fraction of its limit."""
    best: LineState | None = None
    for state in lines:
        if best is None or _fraction(state) < _fraction(best):
            best = state
    return best


def _fraction(state: LineState) -> float:
    # Only used to rank lines; the amounts themselves stay integers.
    return state.remaining / state.line.limit if state.line.limit else float(state.remaining)


def remaining_header(lines: Sequence[LineState]) -> dict[str, str]:
    state = tightest(lines)
    return {} if state is None else {REMAINING: format_amount(state.remaining, state.line.unit)}


def decide(result: ReserveResult, needed: Mapping[str, int], *, shadow: bool) -> Decision:
    """Turn the ledger's answer into the client's, raising the error a denial answers with."""
    if result.status != "active":
        raise Forbidden(
            f"Tenant is {result.status}: no new calls are admitted. Ask the operator to "
            "reactivate it.",
            type=f"tenant_{result.status}",
        )
    would_be = "ALLOW" if result.would_allow else _deny_reason(result)
    headers = remaining_header(result.lines)
    if shadow:
        return Decision("ALLOW", would_be, {DECISION: "ALLOW", SHADOW: would_be, **headers})
    if not result.allowed:
        raise budget_exceeded(result, needed)
    return Decision("ALLOW", would_be, {DECISION: "ALLOW", **headers})


def _deny_reason(result: ReserveResult) -> str:
    if result.denied_by is None:
        return "DENY budget"
    return f"DENY budget {result.lines[result.denied_by].line.level}"


def budget_exceeded(result: ReserveResult, needed: Mapping[str, int]) -> BudgetExceeded:
    assert result.denied_by is not None
    state = result.lines[result.denied_by]
    line = state.line
    scope = "tenant" if line.level == "tenant" else f"{line.level} {line.value!r}"
    period = "" if line.period == "none" else f" this {line.period}"
    message = (
        f"Budget exceeded on {scope}: {format_amount(max(state.remaining, 0), line.unit)} "
        f"remaining of {format_amount(line.limit, line.unit)}{period}, and this call may cost "
        f"up to {format_amount(needed.get(line.unit, 0), line.unit)}. Send a smaller "
        f"max_tokens or a shorter prompt, or ask the operator to raise the {line.level} budget."
    )
    headers = {DECISION: "DENY", REMAINING: format_amount(state.remaining, line.unit)}
    return BudgetExceeded(message, headers=headers)
