"""The memory reserve's view of a request's lines (memory.py), and the result it answers with:
split from memory.py so that each stays readable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.store.ledger.base import BudgetLine, ReserveRequest, ReserveResult, TenantStatus
from proxy.store.ledger.common import DENIED, Outcome, reserve_result
from proxy.store.ledger.memory_state import Record


@dataclass(slots=True)
class Line:
    line: BudgetLine
    pid: str
    prefix: str
    remaining: int
    limit: int
    spent: int


def why(outcome: Outcome, lines: Sequence[Line]) -> tuple[str, str]:
    """Why enforcement denies (or would): the quota, else the budget line (reserve.lua why)."""
    if outcome.quota is not None:
        return "quota", outcome.quota
    if outcome.denied_by is None:
        return "budget", "-"
    line = lines[outcome.denied_by].line
    return "budget", f"{line.level}|{line.value}"


def limited(outcome: Outcome, lines: Sequence[Line]) -> tuple[str, int] | None:
    """The line that denies (or would): its prefix and limit in force; None for none."""
    if outcome.denied_by is None:
        return None
    return lines[outcome.denied_by].prefix, lines[outcome.denied_by].limit


def result(
    request: ReserveRequest,
    status: TenantStatus,
    record: Record | None,
    lines: Sequence[Line],
    outcome: Outcome = DENIED,
    first_deny: str | None = None,
) -> ReserveResult:
    """The result for a record (reserved now or before), or for `outcome` without one."""
    pairs = [(ln.pid, ln.remaining) for ln in lines]
    if record is None:
        return reserve_result(request, status, outcome, {}, pairs, (), first_deny=first_deny)
    settled = None if record.state == "OPEN" else record.state
    return reserve_result(
        request,
        status,
        record.outcome,
        record.amounts,
        pairs,
        record.fields,
        record.held,
        settled=settled,
    )
