"""Shared fixtures: a real redis-server on a free port, and a real three-master Redis Cluster,
each started once per test session (the cluster only if a test asks for it); ALL_STORES, every
store declared once, and `store_url` and `opener` on them."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from proxy.core.types import ReservationSettings
from proxy.store.open import Stores, open_store

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "proxy" / "policy"
"""The directory that holds the example policy the package ships (`example.yaml`, its only YAML)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; .ci/run installs it (apt-get install redis-server)")
    return found


def _wait_until(
    condition: Callable[[], bool], what: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    """Poll `condition` for up to 10 s; on timeout kill `procs` and fail naming `what`."""
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            for proc in procs:
                proc.kill()
                proc.wait()
            pytest.fail(f"{what} within 10 s")
        time.sleep(0.05)


def _answers(
    client: redis.Redis, check: Callable[[redis.Redis], bool] = lambda c: bool(c.ping())
) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return check(client)
        except redis.ConnectionError:
            return False

    return probe


def _start_redis(binary: str, port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A redis-server on loopback `port` that never writes to disk and never evicts."""
    return subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--maxmemory-policy",
            "noeviction",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for this test session; yields its base URL."""
    port = free_port()
    proc = _start_redis(_binary("redis-server"), port, tmp_path_factory.mktemp("redis"))
    client = redis.Redis(port=port)
    _wait_until(_answers(client), "redis-server did not start", [proc])
    client.close()
    yield f"redis://127.0.0.1:{port}/0"
    _stop([proc])


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Redis Cluster of three masters (no replicas) for this test session; yields its
    store URL, `redis+cluster://` naming the first node."""
    server, cli = _binary("redis-server"), _binary("redis-cli")
    workdir = tmp_path_factory.mktemp("cluster")
    ports: list[int] = []
    while len(ports) < 6:  # three client ports, then their cluster bus ports
        port = free_port()
        if port not in ports:
            ports.append(port)
    procs = [
        _start_redis(
            server,
            port,
            workdir,
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(bus),
            "--cluster-config-file",
            str(workdir / f"nodes-{port}.conf"),
        )
        for port, bus in zip(ports[:3], ports[3:], strict=True)
    ]
    clients = [redis.Redis(port=port, decode_responses=True) for port in ports[:3]]
    for client in clients:
        _wait_until(_answers(client), "a cluster node did not start", procs)
    masters = [f"127.0.0.1:{port}" for port in ports[:3]]
    created = subprocess.run(
        [cli, "--cluster", "create", *masters, "--cluster-replicas", "0", "--cluster-yes"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if created.returncode != 0:
        _stop(procs)
        pytest.fail(f"redis-cli --cluster create failed: {created.stdout}{created.stderr}")
    for client in clients:
        ok = _answers(client, lambda c: c.execute_command("CLUSTER INFO")["cluster_state"] == "ok")
        _wait_until(ok, "the cluster did not reach cluster_state:ok", procs)
        client.close()
    yield f"redis+cluster://127.0.0.1:{ports[0]}"
    _stop(procs)


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The session's redis-server, emptied before each test."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    yield redis_server


@pytest.fixture
def redis_cluster_url(redis_cluster: str) -> Iterator[str]:
    """The session's Redis Cluster, every master emptied before each test."""
    client = RedisCluster.from_url(redis_cluster.replace("redis+cluster://", "redis://"))
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    client.close()
    yield redis_cluster


def write_policy(directory: Path, text: str, name: str = "policy.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


MEMORY = pytest.param("memory", id="memory")
REDIS = pytest.param("redis", id="redis")
CLUSTER = pytest.param("redis+cluster", id="redis+cluster")
ALL_STORES = (MEMORY, REDIS, CLUSTER)
"""Every store, declared once (as limits' ALL_STORAGES). A test that holds for each store takes
`@pytest.mark.parametrize("store_url", ALL_STORES, indirect=True)` (EVERY_STORE): every test of
tests/store/ that is not about one backend does. Without it `store_url` runs a test on memory://
and one Redis; a test that only some stores can run names them (`[REDIS, CLUSTER]`)."""
URL_FIXTURES = {"redis": "redis_url", "redis+cluster": "redis_cluster_url"}
EVERY_STORE = pytest.mark.parametrize("store_url", ALL_STORES, indirect=True)
"""The mark, for a test or a module's `pytestmark`."""


@pytest.fixture(params=(MEMORY, REDIS))
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of a store of ALL_STORES (a Redis emptied first): each test using this runs once
    on the embedded store and once on a real redis-server, or on each of ALL_STORES when it asks
    for them."""
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue(URL_FIXTURES[request.param]))


@dataclass
class Opener:
    """Opens every store on one URL (proxy.store.open.open_store), as often as a test asks, each
    with its own settings and owner; closes them all after the test."""

    url: str
    opened: list[Stores] = field(default_factory=list)

    def open(self, settings: ReservationSettings | None = None, owner: str = "me") -> Stores:
        stores = open_store(self.url, settings or ReservationSettings(), owner=owner)
        self.opened.append(stores)
        return stores


@pytest.fixture
async def opener(store_url: str) -> AsyncIterator[Opener]:
    """Stores on `store_url`, opened as the test asks."""
    opened = Opener(store_url)
    yield opened
    for stores in opened.opened:
        await stores.close()
