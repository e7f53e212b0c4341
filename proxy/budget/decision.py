"""ALLOW / ALLOW_WITH_CAPS / DENY, and what the client sees of each.

| decision                  | HTTP       | headers / body                                      |
|---------------------------|------------|-----------------------------------------------------|
| ALLOW                     | upstream's | X-Cycles-Decision: ALLOW, X-Cycles-Remaining        |
| ALLOW_WITH_CAPS           | upstream's | also X-Cycles-Caps: model=gpt-4o-mini; max_tokens=256 |
| DENY, budget              | 402        | type budget_exceeded naming the scope               |
| DENY, quota               | 429        | type quota_exceeded naming the quota; Retry-After   |
| tenant suspended / closed | 403        | type tenant_suspended / tenant_closed               |

In shadow mode nothing is blocked or rewritten: the client gets ALLOW and
X-Cycles-Shadow-Decision says what enforcement would have done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from proxy.budget.call import PreparedCall
from proxy.budget.directory import inactive_tenant
from proxy.budget.variants import Variant
from proxy.core.errors import BudgetExceeded, QuotaExceeded
from proxy.metering.pricing import format_amount
from proxy.store.ledger.base import LineState, ReserveRequest, ReserveResult

DECISION = "X-Cycles-Decision"
REMAINING = "X-Cycles-Remaining"
CAPS = "X-Cycles-Caps"
SHADOW = "X-Cycles-Shadow-Decision"

LONG_WAIT_S = 60
"""Past this, a 429 tells SDKs not to retry (they would only wait and fail again)."""


@dataclass(frozen=True, slots=True)
class Decision:
    kind: str
    """ALLOW or ALLOW_WITH_CAPS: what the proxy does with the call."""
    would_be: str
    """What enforcement decides, e.g. `DENY budget run` (differs from `kind` only in shadow)."""
    headers: dict[str, str] = field(default_factory=dict)
    variant: Variant | None = None
    """The form of the call to send; None when forwarding unbudgeted."""
    fitted: int | None = None
    rewrite: bool = True
    """False in shadow mode: the call goes up as asked."""

    @property
    def rule(self) -> str | None:
        """The degrade rule that fired, for logs."""
        return None if self.variant is None or self.variant.rule is None else self.variant.rule.name


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


def caps(variant: Variant, fitted: int | None) -> str:
    """`model=gpt-4o-mini; max_tokens=256`, or "" when the call goes as asked."""
    pairs = dict(variant.caps)
    if fitted is not None:
        pairs["max_tokens"] = str(fitted)
    return "; ".join(f"{name}={value}" for name, value in pairs.items())


def decide(
    result: ReserveResult, call: PreparedCall, request: ReserveRequest, *, shadow: bool
) -> Decision:
    """Turn the ledger's answer into the client's, raising the error a denial answers with."""
    if result.status != "active":
        raise inactive_tenant(result.status)
    would_be = _would_be(result, call)
    remaining = remaining_header(result.lines)
    if shadow:
        headers = {DECISION: "ALLOW", SHADOW: would_be, **remaining}
        return Decision("ALLOW", would_be, headers, call.asked, rewrite=False)
    if not result.allowed:
        if result.quota is not None:
            raise quota_exceeded(result, request)
        raise budget_exceeded(result, call.asked.amounts)
    variant = call.variants[result.candidate]
    capped = caps(variant, result.fitted)
    kind = "ALLOW_WITH_CAPS" if capped else "ALLOW"
    headers = {DECISION: kind, **remaining, **({CAPS: capped} if capped else {})}
    return Decision(kind, would_be, headers, variant, result.fitted)


def _would_be(result: ReserveResult, call: PreparedCall) -> str:
    if result.quota is not None:
        return f"DENY quota {result.quota.split()[0]}"
    if not result.would_allow:
        if result.denied_by is None:
            return "DENY budget"
        return f"DENY budget {result.lines[result.denied_by].line.level}"
    capped = caps(call.variants[result.candidate], result.fitted)
    return f"ALLOW_WITH_CAPS {capped}" if capped else "ALLOW"


def budget_exceeded(result: ReserveResult, needed: Mapping[str, int]) -> BudgetExceeded:
    state = result.lines[result.denied_by or 0]
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


def quota_exceeded(result: ReserveResult, request: ReserveRequest) -> QuotaExceeded:
    assert result.quota is not None
    name, _, level = result.quota.partition(" ")
    wait = max(1, -(-result.retry_after_ms // 1000))
    never = name == "steps_per_run"
    message = {
        "concurrent_requests": lambda: (
            f"Too many calls in flight on {level} "
            f"{_value(request, level)!r}: the plan allows {_concurrent(request, level)} at once "
            "(concurrent_requests). Retry when one finishes."
        ),
        "runs_per_day": lambda: (
            f"The plan allows {request.quotas.runs_per_day} runs a day (runs_per_day) and today's "
            f"are used; run {request.run!r} cannot start until the day rolls over."
        ),
        "steps_per_run": lambda: (
            f"Run {request.run!r} has made its {request.quotas.steps_per_run} calls (model and "
            "tool calls; steps_per_run); start a new run."
        ),
        "requests_per_minute": lambda: (
            f"More than {_rate(request, level)} calls a minute"
            f"{f' on {level} {_value(request, level, rate=True)!r}' if level else ''} "
            "(requests_per_minute); slow down."
        ),
        "tokens_per_minute": lambda: (
            f"More than {request.quotas.tokens_per_minute} tokens a minute (tokens_per_minute); "
            "slow down or send smaller requests."
        ),
    }[name]()
    headers = {DECISION: "DENY"}
    if not never:
        headers["Retry-After"] = str(wait)
    if never or wait > LONG_WAIT_S:
        headers["x-should-retry"] = "false"
    return QuotaExceeded(message, quota=name, headers=headers)


def _value(request: ReserveRequest, level: str, *, rate: bool = False) -> str:
    scoped = request.quotas.rates if rate else request.quotas.concurrent
    return next((v for lvl, v, _ in scoped if lvl == level), "")


def _rate(request: ReserveRequest, level: str) -> int | None:
    if not level:
        return request.quotas.requests_per_minute
    return next((n for lvl, _, n in request.quotas.rates if lvl == level), 0)


def _concurrent(request: ReserveRequest, level: str) -> int:
    return next((n for lvl, _, n in request.quotas.concurrent if lvl == level), 0)
