"""Validation before anything reaches a store: after these, a store may trust every value.

Lua numbers are doubles, so every amount, limit and intermediate product the scripts form must
stay an exact integer: amounts and limits below 2**52, a fit's `output_per_million * choices`
and the rate quotas below 2**43 (their long division multiplies remainders by 1000). The sums a
store keeps (spent, reserved, credit) stay within [-SAFE_SUM, SAFE_SUM]: both stores check each
sum an operation would change before it writes anything (`out_of_range` here for memory://,
`guard` in lua/common.lua for Redis) and refuse the whole operation with `range_error`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from proxy.core.errors import AmountOutOfRange
from proxy.core.types import MAX_AMOUNT
from proxy.store.ledger.base import Amounts, Candidate, Fit, Quotas, Reservation, ReserveRequest

SAFE_SUM = 2**53 - 1
"""The largest magnitude a ledger sum may reach: every integer up to it is exact in a double."""
MAX_FIT_DIVISOR = 2**43
MAX_RATE = 2**43
_TOKEN = re.compile(r"^[^|\s]+$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_HELD = re.compile(r"^q\|conc\|[A-Za-z0-9_.-]{1,128}\|[A-Za-z0-9_.-]{1,128}$")
_ACTION = re.compile(r"^[A-Za-z0-9_.:/-]{1,300}$")
"""An action's name (policy's ACTION_NAME) or `mcp:<server>/<tool>`."""
_GROUP = re.compile(r"^[A-Za-z0-9_.:/*?-]{1,300}$")
"""A denial grouping key: an action, or a tool price key (a glob) or `mcp:<server>/?`."""
_KINDS = ("always", "never", "remaining_below", "not_fit")


def check_owner(owner: str) -> str:
    if not _TOKEN.match(owner):
        raise ValueError(f"ledger owner {owner!r} must be non-empty, without spaces or '|'")
    return owner


def check_amount(what: str, amount: object, low: int = 0) -> None:
    """Refuse anything Lua's doubles could not hold exactly, before it reaches a store."""
    if type(amount) is not int or not low <= amount < MAX_AMOUNT:
        raise AmountOutOfRange(f"{what} must be an integer in [{low}, 2**52), got {amount!r}")


def check_amounts(what: str, amounts: Amounts) -> None:
    for unit, amount in amounts.items():
        if type(amount) is not int or not 0 <= amount < MAX_AMOUNT:  # the message only then
            check_amount(f"{what} {unit}", amount)


def out_of_range(
    ledger: Mapping[str, int], prefixes: Iterable[str], kind: str, delta: Amounts
) -> str | None:
    """The first `<prefix>|<kind>` whose sum plus delta[prefix] (where lines differ) or
    delta[its unit] would leave [-SAFE_SUM, SAFE_SUM], else None (lua/common.lua
    out_of_range)."""
    for prefix in prefixes:
        name = f"{prefix}|{kind}"
        d = delta.get(prefix, delta.get(prefix.split("|")[2], 0))
        if abs(ledger.get(name, 0) + d) > SAFE_SUM:
            return name
    return None


def check_request(request: ReserveRequest) -> None:
    """Validate a reservation request completely; a store may then trust every value in it."""
    if not request.candidates:
        raise ValueError("a reserve request needs at least one candidate")
    for line in request.lines:
        if not (_TOKEN.match(line.level) and _TOKEN.match(line.value)):
            raise ValueError(f"scope {line.level}={line.value!r} contains '|' or whitespace")
        if line.level == "q":
            raise ValueError("scope level 'q' is reserved for the ledger's quota counters")
        if line.period not in ("day", "month", "none"):
            raise ValueError(f"unknown budget period {line.period!r}: use day, month or none")
        if type(line.limit) is not int or not 0 <= line.limit < MAX_AMOUNT:
            check_amount(f"limit of {line.level} {line.value}", line.limit)
    for index, candidate in enumerate(request.candidates):
        _check_candidate(request, index, candidate)
    if request.ttl_ms is not None:
        check_amount("ttl_ms", request.ttl_ms)
    if request.run is not None and not _NAME.match(request.run):
        raise ValueError(f"run id {request.run!r} must match [A-Za-z0-9_.-]{{1,128}}")
    if request.action is not None and not _ACTION.match(request.action):
        raise ValueError(f"action {request.action!r} must match [A-Za-z0-9_.:/-]{{1,300}}")
    if request.group is not None and not _GROUP.match(request.group):
        raise ValueError(f"group {request.group!r} must match [A-Za-z0-9_.:/*?-]{{1,300}}")
    _check_quotas(request, request.quotas)


def _check_candidate(request: ReserveRequest, index: int, candidate: Candidate) -> None:
    what = f"candidate {index}"
    check_amounts(what, candidate.amounts)
    missing = {line.unit for line in request.lines} - set(candidate.amounts)
    if missing:
        raise ValueError(f"{what} names no amount for {sorted(missing)}")
    condition = candidate.condition
    if condition.kind not in _KINDS:
        raise ValueError(f"{what}: unknown condition {condition.kind!r}: use one of {_KINDS}")
    if index == 0 and (condition.kind not in ("always", "never") or candidate.fit is not None):
        raise ValueError("candidate 0 is the call as asked: condition always or never, no fit")
    if condition.kind == "remaining_below":
        if type(condition.line) is not int or not 0 <= condition.line < len(request.lines):
            raise ValueError(
                f"{what}: remaining_below names line {condition.line!r}, not one of "
                f"the request's {len(request.lines)} lines"
            )
        check_amount(f"{what} remaining_below amount", condition.amount)
    if candidate.fit is not None:
        _check_fit(what, candidate.fit)


def _check_fit(what: str, fit: Fit) -> None:
    for name in ("prompt_units", "prompt_tokens", "output_per_million", "floor", "ceiling"):
        check_amount(f"{what} fit.{name}", getattr(fit, name))
    check_amount(f"{what} fit.choices", fit.choices, low=1)
    if fit.floor > fit.ceiling:
        raise ValueError(f"{what}: fit.floor {fit.floor} is above fit.ceiling {fit.ceiling}")
    if fit.output_per_million * fit.choices >= MAX_FIT_DIVISOR:
        raise AmountOutOfRange(f"{what}: fit.output_per_million x fit.choices must be below 2**43")
    most = fit.ceiling * fit.choices
    check_amount(f"{what} TOKENS at fit.ceiling", fit.prompt_tokens + most)
    usd = fit.prompt_units - (-most * fit.output_per_million // 10**6)
    check_amount(f"{what} USD at fit.ceiling", usd)


def _check_quotas(request: ReserveRequest, quotas: Quotas) -> None:
    per_call = (quotas.runs_per_day, quotas.steps_per_run)
    rates = (quotas.requests_per_minute, quotas.tokens_per_minute)
    if not (quotas.concurrent or quotas.rates) and per_call == rates == (None, None):
        return  # most plans have none: nothing below would check anything
    scoped = [("concurrency", *q) for q in quotas.concurrent]
    scoped += [("rate", *q) for q in quotas.rates]
    for kind, level, value, _limit in scoped:
        if not (_NAME.match(level) and _NAME.match(value)):
            raise ValueError(f"{kind} scope {level}={value!r} must match [A-Za-z0-9_.-]{{1,128}}")
    for level, value, limit in quotas.concurrent:
        check_amount(f"concurrent_requests limit of {level} {value}", limit)
    for level, value, limit in quotas.rates:
        if type(limit) is not int or not 1 <= limit < MAX_RATE:
            raise AmountOutOfRange(
                f"requests_per_minute of {level} {value} must be an integer in [1, 2**43), "
                f"got {limit!r}"
            )
    for name in ("runs_per_day", "steps_per_run"):
        limit = getattr(quotas, name)
        if limit is not None:
            check_amount(name, limit)
    for name in ("requests_per_minute", "tokens_per_minute"):
        limit = getattr(quotas, name)
        if limit is not None and (type(limit) is not int or not 1 <= limit < MAX_RATE):
            raise AmountOutOfRange(f"{name} must be an integer in [1, 2**43), got {limit!r}")
    if quotas.tokens_per_minute is not None:
        for index, candidate in enumerate(request.candidates):
            if "TOKENS" not in candidate.amounts:
                raise ValueError(f"tokens_per_minute needs a TOKENS amount on candidate {index}")


def check_reservation(reservation: Reservation) -> None:
    check_amounts(f"estimate of {reservation.id}", reservation.amounts)
    for name in reservation.held:
        if not _HELD.match(name):
            raise ValueError(f"held counter {name!r} is not a q|conc|<level>|<value> field")
