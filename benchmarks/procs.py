"""The processes under test, each pinned to a core with `taskset`, and what /proc says of them.

CPU time is utime + stime from /proc/<pid>/stat (all threads), in seconds. Memory comes from
/proc/<pid>/smaps_rollup: Rss counts every resident page, Pss divides each shared page among the
processes that map it, and USS (Private_Clean + Private_Dirty) is what the process alone holds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp
import redis

PROXY_CORE = 0
LOAD_CORE = 1
"""The fake upstream, Redis and the load generator (this process) share core 1."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pin_self() -> None:
    """The load generator runs in this process, on the load core."""
    os.sched_setaffinity(0, {LOAD_CORE})


@dataclass
class Service:
    """A subprocess started under `taskset -c <core>`, with its output in a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @classmethod
    def start(
        cls, name: str, core: int, argv: list[str], log_dir: Path, env: dict[str, str] | None = None
    ) -> Service:
        log_dir.mkdir(parents=True, exist_ok=True)
        log = (log_dir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            ["taskset", "-c", str(core), *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=REPO,
        )
        return cls(name, process, log)

    @property
    def pid(self) -> int:
        # taskset execs the command, so the pid is the command's own.
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


async def wait_http(url: str, service: Service, within: float = 30.0) -> None:
    """Until GET `url` answers 200; fails if the service exits first."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited at start; see its log")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{service.name} did not answer {url} within {within:.0f} s")


def python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def start_redis(log_dir: Path) -> tuple[Service, str]:
    """A private redis-server (no persistence) on a free port, on the load core."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    argv = [
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
        str(log_dir),
    ]
    service = Service.start("redis", LOAD_CORE, argv, log_dir)
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        raise RuntimeError("redis-server did not start within 10 s")
    client.close()
    return service, f"redis://127.0.0.1:{port}/0"


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS


def wait_seconds(pids: list[int]) -> float:
    """Time the processes' threads spent runnable but waiting for a core (the run queue;
    /proc/<pid>/task/<tid>/schedstat, second field), in seconds. Threads that have exited
    are not counted."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except FileNotFoundError:
                continue
    return total / 1e9


def load_average() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def machine_cpu_seconds() -> float:
    """CPU time every process on the machine has used (all cores; /proc/stat), in seconds."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """CPU time of this process and of every child it has waited for (the services, once
    stopped, with the workers they waited for)."""
    own = os.times()
    return own.user + own.system + own.children_user + own.children_system


def memory_mib(pid: int) -> dict[str, float]:
    """Rss, Pss and USS of one process, in MiB."""
    kib: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        kib[name] = int(value.split()[0])
    uss = kib["Private_Clean"] + kib["Private_Dirty"]
    return {"rss": kib["Rss"] / 1024, "pss": kib["Pss"] / 1024, "uss": uss / 1024}
