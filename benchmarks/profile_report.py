"""Profiles → the tables of benchmarks/profile.md.

Sampled shares are of the samples in which the proxy was running or runnable (py-spy cannot tell a
thread on the core from one waiting for it), and are also given in µs per call: share × (the
proxy's CPU time + its run-queue wait) per call, both read from /proc over the same window. Self
time is the innermost Python frame; time in C called from Python (orjson, hiredis, the HTTP
parser, socket writes) is charged to the Python function that called it. Samples whose innermost
frame is the event loop's own (`Runner.run`) are uvloop and the C it runs between callbacks:
socket reads and writes, and aiohttp's C HTTP parser fed from `data_received`.
"""

from __future__ import annotations

import pstats
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
_PREFIXES = ("/site-packages/", "/lib/python3.11/", "/lib/python3.12/", "/lib/python3.13/")
EVENT_LOOP = "asyncio/runners.py:Runner.run"
COMPONENTS = (
    ("proxy/", "cycles-proxy (proxy/)"),
    ("aiohttp/", "aiohttp"),
    ("redis/", "redis-py"),
    ("asyncio/", "asyncio (Python part)"),
    ("logging/", "logging"),
    ("prometheus_client/", "prometheus_client"),
    ("multidict/", "multidict"),
    ("yarl/", "yarl"),
    ("tiktoken/", "tiktoken"),
)


@dataclass
class CallRow:
    name: str
    calls_per_request: float
    tottime_share: float
    cumtime_share: float


@dataclass
class Profile:
    stacks: Counter[tuple[str, ...]]
    rate: int
    seconds: float
    requests: int
    cpu_seconds: float
    wait_seconds: float
    """Runnable but waiting for the core (another process on it): py-spy samples that too."""
    gc: dict[str, Any]
    cprofile: list[CallRow]
    cprofile_requests: int

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / self.requests * 1e6 if self.requests else 0.0

    @property
    def wait_us_per_request(self) -> float:
        return self.wait_seconds / self.requests * 1e6 if self.requests else 0.0

    @property
    def sampled_us_per_request(self) -> float:
        """What the samples cover per call: CPU time and the wait for the core."""
        return self.cpu_us_per_request + self.wait_us_per_request


def short_path(path: str) -> str:
    for prefix in _PREFIXES:
        if prefix in path:
            return path.split(prefix, 1)[1]
    for ours in ("proxy", "benchmarks"):
        if f"/{ours}/" in path:
            return f"{ours}/" + path.split(f"/{ours}/", 1)[1]
    return path


def frame_name(frame: str) -> str:
    """`function (path)` → `short/path.py:function` (a torn stack's frame may hold bytes that
    are not text: they are dropped)."""
    frame = "".join(ch for ch in frame if ch.isprintable())
    match = _FRAME.match(frame)
    if match is None:
        return frame
    return f"{short_path(match['file'])}:{match['function']}"


def self_time(stacks: Counter[tuple[str, ...]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for stack, n in stacks.items():
        counts[frame_name(stack[-1])] += n
    return counts


def whole_stacks(stacks: Counter[tuple[str, ...]]) -> Counter[tuple[str, ...]]:
    """The stacks that reach down from the event loop (not torn)."""
    return Counter({s: n for s, n in stacks.items() if any(frame_name(f) == EVENT_LOOP for f in s)})


def inclusive_time(stacks: Counter[tuple[str, ...]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for stack, n in stacks.items():
        for name in {frame_name(frame) for frame in stack}:
            counts[name] += n
    return counts


def component(name: str) -> str:
    if name == EVENT_LOOP:
        return "event loop and C between callbacks (uvloop, sockets, HTTP parser)"
    for prefix, label in COMPONENTS:
        if name.startswith(prefix):
            return label
    return "other: " + name.rsplit(":", 1)[0].split("/", 1)[0]


def cprofile_rows(path: Path, requests: int) -> list[CallRow]:
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in stats.values()) or 1.0
    loop_time = max(row[3] for row in stats.values()) or 1.0
    rows = []
    for (file, _line, function), (_cc, calls, tottime, cumtime, _callers) in stats.items():
        name = function if file == "~" else f"{short_path(file)}:{function}"
        rows.append(CallRow(name, calls / requests, tottime / total, cumtime / loop_time))
    return rows


def _rows(counts: Counter[str], total: int, us_per_request: float, top: int) -> Iterator[str]:
    for name, n in counts.most_common(top):
        share = n / total
        yield f"| `{name}` | {share * 100:.1f} % | {share * us_per_request:.0f} |"


def _gc_lines(profile: Profile) -> Iterator[str]:
    gc, per = profile.gc, 1e6 / profile.requests
    seconds = sum(gc["seconds"])
    share = seconds / profile.cpu_seconds * 100
    yield (
        f"Over the sampled window the cyclic garbage collector ran {sum(gc['collections'])} "
        f"times and took {seconds * per:.0f} µs per call ({share:.1f} % of the proxy's CPU); "
        f"threshold {tuple(gc['threshold'])}, {gc['tracked_objects']} objects tracked."
    )
    yield ""
    yield "| generation | collections per 1000 calls | µs per call |"
    yield "|---|--:|--:|"
    for generation in range(3):
        runs, took = gc["collections"][generation], gc["seconds"][generation]
        yield f"| {generation} | {runs * 1000 / profile.requests:.1f} | {took * per:.1f} |"


def _cprofile_lines(profile: Profile) -> Iterator[str]:
    yield "| function | calls per request | share of own time (cProfile) |"
    yield "|---|--:|--:|"
    rows = sorted(profile.cprofile, key=lambda r: r.tottime_share, reverse=True)
    for row in rows[:30]:
        yield f"| `{row.name}` | {row.calls_per_request:.1f} | {row.tottime_share * 100:.1f} % |"


def _most_called(profile: Profile) -> Iterator[str]:
    yield "| function | calls per request |"
    yield "|---|--:|"
    rows = sorted(profile.cprofile, key=lambda r: r.calls_per_request, reverse=True)
    for row in rows[:25]:
        yield f"| `{row.name}` | {row.calls_per_request:.1f} |"


TITLE = "# Where cycles-proxy spends its CPU (Redis store, under load)"
INTRO = (
    "`python -m benchmarks.profile [--concurrency N]` (how it works: benchmarks/profile.py) "
    "writes one section per concurrency: a run replaces its own section and keeps the others."
)


def _begin(concurrency: int) -> str:
    return f"<!-- concurrency {concurrency} -->"


def _end(concurrency: int) -> str:
    return f"<!-- end concurrency {concurrency} -->"


def merge(existing: str, section: str, concurrency: int) -> str:
    """profile.md with `section` (markdown()'s) in place of its concurrency's, or added last."""
    begin, end = _begin(concurrency), _end(concurrency)
    if begin in existing and end in existing:
        head, rest = existing.split(begin, 1)
        return head + section + rest.split(end, 1)[1]
    if not existing.strip():
        existing = f"{TITLE}\n\n{INTRO}\n"
    return existing.rstrip("\n") + "\n\n" + section + "\n"


def markdown(profile: Profile, command: str, concurrency: int) -> str:
    """The section of profile.md for one concurrency, between its markers."""
    total, us = profile.samples, profile.sampled_us_per_request
    whole = whole_stacks(profile.stacks)
    whole_total = sum(whole.values())
    components: Counter[str] = Counter()
    for name, n in self_time(profile.stacks).items():
        components[component(name)] += n
    ours = Counter({k: v for k, v in inclusive_time(whole).items() if k.startswith("proxy/")})
    header = ["| function | share of proxy CPU | µs per call |", "|---|--:|--:|"]
    lines = [
        _begin(concurrency),
        f"## Concurrency {concurrency}",
        "",
        f"`{command}`: py-spy `--nonblocking` at "
        f"{profile.rate} Hz for {profile.seconds:.0f} s: {total} samples of the running proxy, "
        f"{(total - whole_total) * 100 / max(total, 1):.0f} % of them torn; {profile.requests} "
        f"calls (JSON and stream alternating, concurrency {concurrency}); proxy CPU "
        f"{profile.cpu_us_per_request:.0f} µs per call over the window, and "
        f"{profile.wait_us_per_request:.0f} µs waiting for its core (run queue: other processes "
        "on it), which py-spy samples as running. µs per call = share × their sum. A thread "
        "woken from epoll waits for the core before its first Python frame, so that wait falls "
        "mostly on the event loop's row: the nearer it is to 0, the truer the shares.",
        "",
        "### Garbage collection",
        "",
        *_gc_lines(profile),
        "",
        "### By component (self time, all samples)",
        "",
        *header,
        *_rows(components, total, us, 15),
        "",
        "### Self time: the 30 most expensive functions (all samples)",
        "",
        *header,
        *_rows(self_time(profile.stacks), total, us, 30),
        "",
        "### Inclusive time of the proxy's own functions (whole stacks only, top 40)",
        "",
        *header,
        *_rows(ours, whole_total, us, 40),
        "",
        f"### cProfile: own time ({profile.cprofile_requests} calls profiled)",
        "",
        *_cprofile_lines(profile),
        "",
        "### cProfile: the most called functions",
        "",
        *_most_called(profile),
        _end(concurrency),
    ]
    return "\n".join(lines)
