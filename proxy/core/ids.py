"""Unique ids for reservations and requests, without a system call per id.

`uuid.uuid4()` reads 16 bytes from the kernel for every id, twice per call. Here each process
draws a random 64-bit prefix once (again in every forked worker) and counts: ids stay unique
across processes and replicas, and look like `uuid4().hex` (32 hex digits). They are not
secrets: nothing may rely on an id being unguessable (the actions API mints its own).
"""

from __future__ import annotations

import itertools
import os
import secrets

_prefix = secrets.token_hex(8)
_counter = itertools.count()


def _reseed() -> None:
    global _prefix, _counter
    _prefix = secrets.token_hex(8)
    _counter = itertools.count()


os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """32 hex digits, unique to this process's prefix."""
    return f"{_prefix}{next(_counter):016x}"
