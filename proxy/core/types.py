"""What every layer shares about amounts: the units a budget is kept in, periods, modes,
the bound on any amount, and how long reservations and ledger entries live.

The policy compiles into these and the store keeps them, so they sit below both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Unit = str
"""A unit name: a call unit (CALL_UNITS) or an action unit (`is_action_unit`)."""
Period = Literal["day", "month", "none"]
Mode = Literal["enforce", "shadow"]

UNITS_PER_USD = 10**8
"""USD is stored in micro-cents: 1 USD = 10**8 units."""

MAX_AMOUNT = 2**52
"""No amount may reach this: Lua numbers are doubles and must stay exact."""


CALL_UNITS: tuple[Unit, ...] = ("USD", "TOKENS")
"""What LLM calls are priced and budgeted in (a plan's `budgets:`)."""
RISK_POINTS: Unit = "RISK_POINTS"
"""The default action unit (`actions:`, a plan's `action_budgets:`)."""
BUILTIN_UNITS: tuple[Unit, ...] = (*CALL_UNITS, RISK_POINTS)
"""The units every ledger knows without a policy; operators may add action units of their own."""
_OPERATOR_UNIT = re.compile(r"[A-Z][A-Z0-9_]{0,31}")


def is_action_unit(name: str) -> bool:
    """Whether `name` is an action unit: RISK_POINTS, or an operator's unit (`EMAILS`,
    `TOOL_CALLS`: an upper-case letter, then up to 31 of A-Z, 0-9, `_`), never USD or TOKENS.
    Action units are counts."""
    return name not in CALL_UNITS and _OPERATOR_UNIT.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class ReservationSettings:
    """How long reservations and ledger entries live, in milliseconds."""

    cap_ms: int = 30 * 60 * 1000
    """Absolute lifetime of an open reservation; longer than the longest allowed stream."""
    tombstone_ms: int = 2 * 60 * 60 * 1000
    """How long a settled reservation is remembered, so a late or repeated settle is idempotent."""
    run_idle_ms: int = 7 * 24 * 60 * 60 * 1000
    """A run's entries expire this long after they were last touched."""
    user_idle_ms: int = 7 * 24 * 60 * 60 * 1000
    """An end user's entries expire this long after they were last touched, never before their
    period ends (store/ledger/common.py user_expiry), and never later than any period entry."""
    period_grace_ms: int = 7 * 24 * 60 * 60 * 1000
    """Period entries are kept until the period ends plus this, for late commits."""
    on_expiry: Literal["charge", "release"] = "charge"
    audit_retention_ms: int = 30 * 24 * 60 * 60 * 1000
    """Audit entries older than this are trimmed from a tenant's trail."""
    history_retention_ms: int = 400 * 24 * 60 * 60 * 1000
    """A day's rollups (the ledger's history) are kept this long after the day ends."""
    history_values_per_level: int = 100
    """How many values of a level whose values come from headers (workspace to toolset) keep
    their own row in a tenant's day; later ones are summed in the level's `*` row."""


END_USER = "user"
"""The scope level of a tenant's end users, keyed by (tenant, user id) as the run is by (tenant,
run id). There may be millions: its entries expire when idle (ReservationSettings.user_idle_ms)
and its lines raise no alerts (store/ledger/common.py)."""

SCOPE_VALUE = re.compile(r"(?!-\Z)[A-Za-z0-9_.-]{1,128}")
"""What a scope value may be, in a header or pinned by an API key: never `-` alone, which the
ledger's scripts read as "every value" (lua/tenant_ledger.lua) or "no period"."""
