"""The mutation list stays applicable as the code moves: every mutation's text occurs exactly once
in its file and names tests that exist. Whether the suite catches each one is shown by the
command in tests/mutations.py, which takes minutes and so runs on its own."""

from __future__ import annotations

import pytest
from mutations import MUTATIONS, Mutation, stale


def test_mutation_names_are_unique() -> None:
    names = [m.name for m in MUTATIONS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_mutation_applies_to_the_code(mutation: Mutation) -> None:
    assert stale(mutation) is None, f"{mutation.name}: {stale(mutation)}"
    assert mutation.old != mutation.new
