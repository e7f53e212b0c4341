"""Port 0 under `--workers N`: one free port that every worker serves.

Each worker binds its listeners itself with SO_REUSEPORT, so the kernel spreads connections over
the workers. Port 0 would give each worker a free port of its own, so the parent binds each
port-0 address once first (SO_REUSEPORT, never listening: the kernel hands connections only to
listening sockets) and the workers bind the port it got. The parent holds those sockets until
the workers are gone, so no other server can take the port meanwhile.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from proxy.settings import Settings


@contextmanager
def pinned(settings: Settings) -> Iterator[Settings]:
    """`settings` with every port 0 replaced by a free port held for the block's duration."""
    held: list[socket.socket] = []

    def pin(address: tuple[str, int]) -> tuple[str, int]:
        host, port = address
        if port != 0:
            return address
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        held.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, 0))
        return host, int(sock.getsockname()[1])

    try:
        host, port = pin((settings.host, settings.port))
        yield dataclasses.replace(
            settings,
            host=host,
            port=port,
            admin=None if settings.admin is None else pin(settings.admin),
            metrics=None if settings.metrics is None else pin(settings.metrics),
        )
    finally:
        for sock in held:
            sock.close()
