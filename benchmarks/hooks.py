"""python -m benchmarks.hooks OUT [--cprofile] -- ARGS: `cycles-proxy ARGS`, with measuring hooks.

The proxy runs through its own entry point (`proxy.__main__.main`), unchanged. The hooks only
watch, and only between two signals, so start-up and warm-up stay out of the figures:

    SIGUSR1   start: zero the counters (and enable cProfile with --cprofile)
    SIGUSR2   stop: write OUT.gc.json (time spent in the cyclic garbage collector, per
              generation, timed with gc.callbacks) and, with --cprofile, OUT.pstats

Signal handlers run in the main thread, which is the event loop's, so cProfile sees the loop.
"""

from __future__ import annotations

import cProfile
import gc
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from proxy.__main__ import main as proxy_main


class GcClock:
    """Wall time inside gc collections (the process is single-threaded, so it is CPU time)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self.seconds[generation] += time.perf_counter() - self._started
        self.collections[generation] += 1

    def reset(self) -> None:
        self.seconds, self.collections = [0.0, 0.0, 0.0], [0, 0, 0]


def install(out: Path, with_cprofile: bool) -> None:
    clock = GcClock()
    gc.callbacks.append(clock)
    profiler = cProfile.Profile() if with_cprofile else None

    def start(_signum: int, _frame: FrameType | None) -> None:
        clock.reset()
        if profiler is not None:
            profiler.enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(out.with_suffix(".pstats"))
        figures = {
            "seconds": clock.seconds,
            "collections": clock.collections,
            "threshold": gc.get_threshold(),
            "tracked_objects": len(gc.get_objects()),
        }
        out.with_suffix(".gc.json").write_text(json.dumps(figures))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


def main() -> int:
    args = sys.argv[1:]
    if "--" not in args:
        raise SystemExit(__doc__)
    ours, proxy_args = args[: args.index("--")], args[args.index("--") + 1 :]
    install(Path(ours[0]), "--cprofile" in ours[1:])
    return proxy_main(proxy_args)


if __name__ == "__main__":
    sys.exit(main())
