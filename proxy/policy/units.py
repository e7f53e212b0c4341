"""Decimal amounts as written → exact integer units, refusing anything the ledger cannot hold.

USD is counted in units of 1e-8 (`core.types.UNITS_PER_USD`), so a price or limit may have at most
eight decimal places; tokens are counted whole. No amount may reach 2**52 units: the ledger's Lua
scripts hold numbers as doubles, which are exact only below that.
"""

from __future__ import annotations

import re
from decimal import Decimal

from proxy.core.types import MAX_AMOUNT, UNITS_PER_USD

USD_PLACES = len(str(UNITS_PER_USD)) - 1
"""Decimal places of a USD amount that units can hold: 8."""


class AmountError(ValueError):
    """An amount that cannot be held exactly in integer units; the message says why."""


def to_units(value: Decimal, places: int, name: str, unit: str) -> int:
    """`value * 10**places`, exactly. `name` and `unit` are for the message, e.g. "limit", "USD".

    Raises AmountError if the result is not a whole number or is at or above 2**52.
    """
    if value >= Decimal(MAX_AMOUNT).scaleb(-places):
        raise AmountError(
            f"{name} {value} {unit} is {_scientific(value.scaleb(places))} units, at or above "
            "2**52; the ledger's Lua scripts hold amounts as doubles"
        )
    units = _scaled(value, places)
    if units is None:
        raise AmountError(
            f"{name} {value} {unit} has more than {places} decimal places; USD is counted in "
            f"units of 1e-{places}"
            if places
            else f"{name} {value} {unit} is not a whole number"
        )
    return units


def _scaled(value: Decimal, places: int) -> int | None:
    """`value * 10**places` in integer arithmetic (Decimal arithmetic would round past 28
    digits), or None if that is not whole. The caller has bounded `value`, so the power of ten
    stays small."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        return None
    magnitude = int("".join(map(str, digits)) or "0")
    if magnitude == 0:
        return 0
    shift = exponent + places
    units: int
    if shift >= 0:
        units = magnitude * 10**shift
    elif -shift > len(digits):
        return None
    else:
        units, rest = divmod(magnitude, 10**-shift)
        if rest:
            return None
    return -units if sign else units


def _scientific(value: Decimal) -> str:
    """5E+15 → '5e15'."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


_PERCENT = re.compile(r"(\d{1,3})(?:\.(\d{1,2}))?%")
THRESHOLD_HINT = (
    "write a percentage of the budget's limit in quotes, above 0 and at most 100 with up to 2 "
    'decimals, e.g. "80%"'
)


def basis_points(value: object) -> int | None:
    """An alert threshold as written, "80%", in basis points of a limit (8000); None when it
    is not a percentage in (0, 100] with at most two decimals."""
    match = _PERCENT.fullmatch(value) if isinstance(value, str) else None
    bp = 0 if match is None else int(match[1]) * 100 + int((match[2] or "0").ljust(2, "0"))
    return bp if 0 < bp <= 10_000 else None


def percent(bp: int) -> str:
    """Basis points as operators write them: 8000 → "80%", 8050 → "80.5%"."""
    whole, part = divmod(bp, 100)
    return f"{whole}%" if part == 0 else f"{whole}.{part:02d}".rstrip("0") + "%"
