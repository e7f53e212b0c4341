"""A `serve` whose startup fails partway closes everything it had opened by then: whether a port
another process holds stops it, a store that refuses a command, or a resource of the proxy app
that cannot open after the stores did, no Redis connection of the proxy's stays open.

Run in this process (serve's own `_listeners` and `_start`), so that what stays open can be
counted while the failure is still held: the proxy connects as a Redis user of its own, and
CLIENT LIST names each connection's user. That the command line still says one line and exits 2
is tests/processes/test_ports.py's.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from support import eventually, policy

from proxy.__main__ import command_line
from proxy.cli import serve
from proxy.core.errors import LedgerError, SettingsError
from proxy.gateway.context import SESSION
from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.settings import Settings

USER = "proxy-under-test"


@pytest.fixture
def as_user(redis_url: str) -> Iterator[tuple[redis.Redis, str]]:
    """A client of the test's own, and the store URL of USER (whom the test creates with
    `allow`); USER is deleted afterwards."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    parts = urlsplit(redis_url)
    url = urlunsplit(parts._replace(netloc=f"{USER}:secret@{parts.netloc}"))
    try:
        yield client, url
    finally:
        client.acl_deluser(USER)
        client.close()


def allow(client: redis.Redis, *rules: str) -> None:
    """USER may run every command but those `rules` take away (`-set`)."""
    client.acl_setuser(
        USER,
        enabled=True,
        reset=True,
        passwords=["+secret"],
        keys=["*"],
        channels=["*"],
        categories=["+@all"],
        commands=list(rules),
    )


def open_connections(client: redis.Redis) -> list[str]:
    """The addresses of USER's connections to the store."""
    return [c["addr"] for c in client.client_list() if c.get("user") == USER]


def serve_args(tmp_path: Path, store: str, *flags: str) -> tuple[Settings, Policy]:
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    args = ["serve", "--policy", str(tmp_path / "policy.yaml"), "--store", store]
    args += ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *flags]
    settings = serve.settings_from(command_line().parse_args(args))
    return settings, load_policy(settings.policy)


@pytest.fixture
def taken() -> Iterator[str]:
    """A loopback address another socket listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield f"127.0.0.1:{holder.getsockname()[1]}"


async def all_closed(client: redis.Redis) -> None:
    await eventually(lambda: not open_connections(client), "every connection of the proxy closed")


async def test_a_port_taken_after_the_store_opened_leaves_no_connection_open(
    tmp_path: Path, as_user: tuple[redis.Redis, str], taken: str
) -> None:
    """The proxy listener is up (its stores open, its seeding done) when the metrics port turns
    out to be taken: the listeners started are stopped and their stores closed."""
    client, url = as_user
    allow(client)
    flags = ("--metrics-listen", taken, "--allow-unauthenticated-metrics")
    settings, the_policy = serve_args(tmp_path, url, *flags)
    with pytest.raises(SettingsError, match="already in use") as failure:
        await serve._start(serve._listeners(settings, the_policy), settings, the_policy)
    await all_closed(client)
    assert failure.value is not None  # held until here: nothing was closed by being collected


async def test_a_store_that_refuses_a_command_at_start_leaves_no_connection_open(
    tmp_path: Path, as_user: tuple[redis.Redis, str]
) -> None:
    """A Redis user that may not SET (the epoch the ledger records at start): the store is
    refused after its client connected, and that client is closed."""
    client, url = as_user
    allow(client, "-set")
    settings, the_policy = serve_args(tmp_path, url)
    with pytest.raises(LedgerError, match="no permissions to run the 'set' command") as failure:
        await serve._start(serve._listeners(settings, the_policy), settings, the_policy)
    await all_closed(client)
    assert failure.value is not None


async def test_a_resource_that_cannot_open_after_the_stores_leaves_them_closed(
    tmp_path: Path, as_user: tuple[redis.Redis, str]
) -> None:
    """The proxy app's startup fails after its stores and its upstream session opened (a
    resource of its own cannot open): both are closed, and the failure is what is raised."""
    client, url = as_user
    allow(client)
    settings, the_policy = serve_args(tmp_path, url)
    listeners = serve._listeners(settings, the_policy)
    app = listeners[0].build()

    async def cannot_open(_app: object) -> AsyncIterator[None]:
        assert open_connections(client), "the stores are open by now"
        raise RuntimeError("this resource cannot open")
        yield

    app.cleanup_ctx.append(cannot_open)
    with pytest.raises(RuntimeError, match="cannot open") as failure:
        await serve._start(listeners, settings, the_policy)
    await all_closed(client)
    assert app[SESSION].closed
    assert failure.value is not None
