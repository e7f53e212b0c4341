"""The problems `compile_policy` collects, each at the field path at fault (the loader adds the
file and line), and the conversion to integer units that reports a problem instead of raising.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from proxy.core.errors import PolicyError
from proxy.policy.units import AmountError, to_units

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Issue:
    loc: Loc
    """The field path at fault, as pydantic writes it: ("plans", "pro", "budgets", …)."""
    message: str


def field_path(loc: Loc) -> str:
    """`plans.pro.budgets.tenant.limit`, `routes[0].upstream`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":
            text += f".{part}" if text else part
    return text or "(top level)"


class PolicyIssues(PolicyError):
    """`compile_policy` found problems, each with its field path (the loader adds file and line)."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(f"{field_path(i.loc)}: {i.message}" for i in self.issues))


def units_or_issue(
    value: Decimal, places: int, loc: Loc, what: tuple[str, str], out: list[Issue]
) -> int:
    """`value` in integer units, or an issue (and 0)."""
    try:
        return to_units(value, places, *what)
    except AmountError as exc:
        out.append(Issue(loc, str(exc)))
        return 0
