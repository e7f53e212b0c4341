"""Shared fixtures: a real redis-server on a free port, and a real three-master Redis Cluster,
each started once per test session (the cluster only if a test asks for it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

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


STORES = ("memory", "redis", "redis+cluster")
"""Every store; `@pytest.mark.parametrize("store_url", STORES, indirect=True)` runs a test on
the cluster too."""


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on the embedded store and once on a real redis-server
    (and on the Redis Cluster, when the test asks for STORES)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "redis+cluster":
        return str(request.getfixturevalue("redis_cluster_url"))
    return str(request.getfixturevalue("redis_url"))
