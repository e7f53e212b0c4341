"""Load a policy from a file or a directory of files, with errors that name file, line and field.

A directory is read as one policy: every `*.yaml` / `*.yml` in it, in name order (dotfiles such
as editor lock files are skipped; Kubernetes' `..data` symlink farm is followed). Named entries
(`upstreams`, `models`, `plans`, `tenants`, `actions`) merge across files and a name defined
twice is an error naming both files; `routes` concatenate in file order; any other setting may
appear in one file only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from proxy.core.errors import PolicyError
from proxy.policy.issues import Issue, Loc, PolicyIssues, field_path
from proxy.policy.runtime import Policy
from proxy.policy.schema import compile_policy
from proxy.policy.yamlfile import Document, line_of, read

NAMED_SECTIONS: tuple[str, ...] = ("upstreams", "models", "plans", "tenants", "actions")
SUFFIXES: tuple[str, ...] = (".yaml", ".yml")


def load_policy(path: str | Path) -> Policy:
    """Read, merge and check the policy at `path` (a file or a directory).

    Raises PolicyError; its message has one line per problem, `file:line: field.path: what`.
    """
    base = Path(path)
    merged = _Merged()
    for file in policy_files(base):
        merged.add(read(file, str(file)))
    try:
        return compile_policy(merged.raw, source=str(base))
    except PolicyIssues as exc:
        raise PolicyError(merged.report(exc.issues)) from None


def policy_files(base: Path) -> list[Path]:
    """The files that make up the policy at `base`, in load order."""
    if base.is_dir():
        files = sorted(
            p
            for p in base.iterdir()
            if p.suffix in SUFFIXES and not p.name.startswith(".") and p.is_file()
        )
        if not files:
            raise PolicyError(f"{base}: no *.yaml or *.yml files in this directory")
        return files
    if base.is_file():
        return [base]
    raise PolicyError(f"{base}: no such file or directory")


class _Merged:
    """The merged raw policy, and which file each part of it came from."""

    def __init__(self) -> None:
        self.raw: dict[str, Any] = {}
        self.documents: list[Document] = []
        self.owner: dict[tuple[str, str], Document] = {}
        """(section, name) → its file; (section, "") → the first file with that section."""
        self.routes: list[tuple[Document, int]] = []
        """Merged route index → (file, index within that file)."""

    def add(self, document: Document) -> None:
        self.documents.append(document)
        for key, value in document.data.items():
            if value is None and (key in NAMED_SECTIONS or key == "routes"):
                continue
            so_far = self.raw.get(key)
            named = key in NAMED_SECTIONS and isinstance(value, dict)
            if named and isinstance(so_far, dict | None):
                self._add_named(document, key, value)
            elif key == "routes" and isinstance(value, list) and isinstance(so_far, list | None):
                self._add_routes(document, value)
            else:
                self._add_setting(document, key, value)

    def _add_named(self, document: Document, section: str, entries: dict[str, Any]) -> None:
        self.owner.setdefault((section, ""), document)
        target = self.raw.setdefault(section, {})
        for name, entry in entries.items():
            first = self.owner.get((section, name))
            if first is not None:
                raise PolicyError(
                    f"{self._at(document, (section, name))}: {section}.{name}: already defined in "
                    f"{self._at(first, (section, name))}; each name may be defined in one file only"
                )
            self.owner[(section, name)] = document
            target[name] = entry

    def _add_routes(self, document: Document, routes: list[Any]) -> None:
        self.owner.setdefault(("routes", ""), document)
        self.raw.setdefault("routes", []).extend(routes)
        self.routes.extend((document, index) for index in range(len(routes)))

    def _add_setting(self, document: Document, key: str, value: Any) -> None:
        first = self.owner.get((key, ""))
        if first is not None:
            raise PolicyError(
                f"{self._at(document, (key,))}: {key}: already set in {self._at(first, (key,))}; "
                "set it in one file only"
            )
        self.owner[(key, "")] = document
        self.raw[key] = value

    @staticmethod
    def _at(document: Document, loc: Loc) -> str:
        return f"{document.shown}:{line_of(document.root, loc)}"

    def locate(self, loc: Loc) -> tuple[Document, int]:
        """The file and line that `loc` (a path in the merged policy) was written at."""
        if loc[:1] == ("routes",) and len(loc) > 1 and isinstance(loc[1], int):
            document, index = self.routes[loc[1]]
            return document, line_of(document.root, ("routes", index, *loc[2:]))
        section = str(loc[0]) if loc else ""
        document = (
            (self.owner.get((section, str(loc[1]))) if len(loc) > 1 else None)
            or self.owner.get((section, ""))
            or self.documents[0]
        )
        return document, line_of(document.root, loc)

    def report(self, issues: tuple[Issue, ...]) -> str:
        """One line per issue, `file:line: field.path: what`, in file and line order."""
        lines = []
        for issue in issues:
            document, line = self.locate(issue.loc)
            order = (self.documents.index(document), line)
            text = f"{document.shown}:{line}: {field_path(issue.loc)}: {issue.message}"
            lines.append((order, text))
        return "\n".join(text for _, text in sorted(lines, key=lambda pair: pair[0]))


def with_upstream_override(policy: Policy, url: str | None) -> Policy:
    """`--upstream URL` points every upstream at one base URL (local fakes, staging)."""
    if url is None:
        return policy
    base = url.rstrip("/")
    upstreams = {
        name: dataclasses.replace(upstream, base_url=base)
        for name, upstream in policy.upstreams.items()
    }
    return dataclasses.replace(policy, upstreams=upstreams)
