"""The pieces every part of the policy spec is built from: the models' configuration (unknown
fields are errors, values frozen), the checked scalar types, and how a check reports a problem.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError


def problem(message: str) -> PydanticCustomError:
    """A check's failure, reported by pydantic with the field path at fault."""
    return PydanticCustomError("policy", message)


def not_float(value: object) -> object:
    # The YAML loader never produces floats; this keeps programmatic callers honest too.
    if isinstance(value, float):
        raise problem("amounts must not be floats (floats are inexact): pass text or a Decimal")
    return value


def check_env_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise problem(f"{name!r} is not an environment variable name; write e.g. OPENAI_API_KEY")
    return name


Money = Annotated[Decimal, BeforeValidator(not_float), Field(ge=0)]
"""A price or limit exactly as written (never through float)."""
Seconds = Annotated[float, Field(gt=0)]
Bytes = Annotated[int, Field(gt=0)]
WholeSeconds = Annotated[int, Field(gt=0)]
Name = Annotated[str, Field(min_length=1)]
Mode = Literal["enforce", "shadow"]


SPEC_CONFIG = ConfigDict(extra="forbid", frozen=True)
"""Every spec's: unknown fields are errors, values frozen. Each spec module declares its own base
class with it (`class _Spec(BaseModel)`), which is how ruff sees its classes are pydantic's."""


def check_service_url(url: str, *, what: str, example: str, key_field: str) -> str:
    """An http(s) URL the proxy relays to (an upstream's base_url, an MCP server's url): no
    query, fragment or credentials (those go in the environment variable `key_field` names);
    without a trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise problem(f"{url!r} is not an http(s) URL; write e.g. {example}")
    if "?" in url or "#" in url:
        raise problem(f"{what} must not have a query or a fragment")
    if parts.username is not None or parts.password is not None:
        raise problem(
            f"{what} must not carry credentials; name an environment variable in {key_field}"
        )
    return url.rstrip("/")
