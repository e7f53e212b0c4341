"""The listeners' ports: one that is taken, and port 0 under `--workers N`.

A port another process holds (a second `serve` on the same host) is one line naming the address
and the flag that changes it (`in_use`), and exit status 2: never a traceback.

Port 0 under `--workers N`: each worker binds its listeners itself with SO_REUSEPORT, so the
kernel spreads connections over the workers. Port 0 would give each worker a free port of its
own, so the parent binds each port-0 address once first (SO_REUSEPORT, never listening: the kernel
hands connections only to listening sockets) and the workers bind the port it got. The parent
holds those sockets until the workers are gone, so no other server can take the port meanwhile.
It binds the other ports the same way, so one another process holds is found once, in the
parent, before any worker starts.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from proxy.core.errors import SettingsError
from proxy.settings import Settings

PROXY_FLAG, ADMIN_FLAG, METRICS_FLAG = "--listen", "--admin-listen", "--metrics-listen"


def in_use(host: str, port: int, flag: str) -> SettingsError:
    """The one line a listener whose address is taken prints (cycles-proxy exits 2)."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    off = "" if flag == PROXY_FLAG else f", or {flag} off"
    return SettingsError(
        f"{address} ({flag}) is already in use by another process (another cycles-proxy on this "
        f"host?); give this one a free address with {flag} HOST:PORT{off}."
    )


def is_in_use(exc: OSError) -> bool:
    return exc.errno == errno.EADDRINUSE


@contextmanager
def pinned(settings: Settings) -> Iterator[Settings]:
    """`settings` with every port 0 replaced by a free port held for the block's duration; an
    address another process holds is `in_use`."""
    held: list[socket.socket] = []

    def pin(address: tuple[str, int], flag: str) -> tuple[str, int]:
        host, port = address
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        held.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if is_in_use(exc):
                raise in_use(host, port, flag) from None
            raise
        if port != 0:
            return address
        return host, int(sock.getsockname()[1])

    try:
        host, port = pin((settings.host, settings.port), PROXY_FLAG)
        yield dataclasses.replace(
            settings,
            host=host,
            port=port,
            admin=None if settings.admin is None else pin(settings.admin, ADMIN_FLAG),
            metrics=None if settings.metrics is None else pin(settings.metrics, METRICS_FLAG),
        )
    finally:
        for sock in held:
            sock.close()
