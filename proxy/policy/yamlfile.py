"""One policy file → Python objects, keeping the YAML node tree so errors can name a line.

Three departures from `yaml.safe_load`, each for the operator's sake:
- floats are `Decimal` built from the scalar's text, never a binary float (`0.075` stays exact);
- mapping keys are always the key's text, so a tenant called `47` is "47", not the int 47;
- a key repeated in one mapping is an error, where PyYAML would silently keep the last one.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from proxy.core.errors import PolicyError

_MERGE = "tag:yaml.org,2002:merge"
_SPECIAL_FLOATS = {".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity", ".nan": "NaN"}


@dataclass(frozen=True, slots=True)
class Document:
    shown: str
    """The file's path as messages print it."""
    data: dict[str, Any]
    root: yaml.Node | None


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        _refuse_duplicates(node)
        self.flatten_mapping(node)
        mapping: dict[Hashable, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConstructorError(
                    None,
                    None,
                    "a key must be a plain name, not a list or mapping",
                    key_node.start_mark,
                )
            mapping[key_node.value] = self.construct_object(value_node, deep=deep)
        return mapping


def _refuse_duplicates(node: yaml.MappingNode) -> None:
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
            continue
        if key_node.value in seen:
            raise ConstructorError(
                None,
                None,
                f"duplicate key {key_node.value!r} (first at line {seen[key_node.value] + 1})",
                key_node.start_mark,
            )
        seen[key_node.value] = key_node.start_mark.line


def _decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    text = str(node.value)
    cleaned = text.replace("_", "").lower()
    try:
        if ":" in cleaned:
            raise InvalidOperation
        return Decimal(_SPECIAL_FLOATS.get(cleaned, cleaned))
    except InvalidOperation:
        raise ConstructorError(
            None, None, f"{text!r} is not a decimal number", node.start_mark
        ) from None


_Loader.add_constructor("tag:yaml.org,2002:float", _decimal)


def read(path: Path, shown: str) -> Document:
    """Parse one policy file. Raises PolicyError naming the file and line on any YAML error."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{shown}: cannot read the file: {exc}") from None
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = {} if root is None else loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        raise PolicyError(_yaml_message(shown, exc)) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise PolicyError(
            f"{shown}:{line_of(root, ())}: the top level must be a mapping of sections "
            "(mode, upstreams, routes, models, plans, tenants, ...)"
        )
    return Document(shown, data, root)


def _yaml_message(shown: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{shown}:{mark.line + 1}: invalid YAML at column {mark.column + 1}" if mark else shown
    message = f"{where}: {exc.problem or exc.context}"
    if exc.problem and exc.context and exc.context_mark:
        message += f" ({exc.context} at line {exc.context_mark.line + 1})"
    return message


def line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int:
    """The 1-based line of the deepest node along `loc` that the file has.

    A value written under its key (a mapping, a list) is reported at the key's line; a scalar at
    its own. A path that leaves the file (a missing field) stops at the nearest existing parent.
    """
    if root is None:
        return 1
    node, line = root, root.start_mark.line
    for part in loc:
        found = _child(node, part)
        if found is None:
            break
        key, node = found
        line = (key or node).start_mark.line
    if isinstance(node, yaml.ScalarNode):
        line = node.start_mark.line
    return line + 1


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        # The last match wins, as it does in a mapping with merged (`<<`) keys.
        matches = [
            (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)
        ]
        return matches[-1] if matches else None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return None, node.value[part]
    return None
