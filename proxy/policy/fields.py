"""Which fields a pydantic model accepts at a given path, for "unknown field" messages."""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel


def fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The field names of the model found by following `loc` from `model`; [] if none."""
    current: Any = model
    for part in loc:
        current = _unwrap(_step(current, part))
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _step(current: Any, part: str | int) -> Any:
    if isinstance(current, type) and issubclass(current, BaseModel):
        field = current.model_fields.get(str(part))
        return None if field is None else field.annotation
    if typing.get_origin(current) is dict:
        return typing.get_args(current)[1]
    if typing.get_origin(current) is list:
        return typing.get_args(current)[0]
    return None


def _unwrap(annotation: Any) -> Any:
    """`X | None` → X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return options[0] if len(options) == 1 else None
    return annotation
