"""python -m benchmarks.memory_runs [--quick] [--out DIR]: the memory store's reserve time as
one tenant's runs grow from 1 000 to 100 000 (issue 15, acceptance 4).

One tenant, one `memory://` ledger in this process, no HTTP: every call reserves on a month
budget for the tenant and on its run's budget, with runs_per_day and steps_per_run quotas, so
each new run adds what a real run adds to the store (a run budget entry and two quota fields,
each with an expiry, kept `run_idle_seconds`), and is then committed (a tombstone). The ledger
is filled to each size with new runs; at each size, `SAMPLE` more reserves of new runs are
timed one by one (`time.perf_counter_ns` around the awaited call) and the median and p99
reported. Flat means the cost per reserve does not depend on how many runs the tenant has.

Writes benchmarks/memory_runs.json and benchmarks/memory_runs.md (committed: the last full
run); --quick stops at 10 000 runs and writes under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from proxy.core.types import ReservationSettings
from proxy.store.ledger import MemoryLedger
from proxy.store.ledger.base import BudgetLine, Candidate, Quotas, ReserveRequest

HERE = Path(__file__).resolve().parent
SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000, 10_000)
SAMPLE = 2_000
QUOTAS = Quotas(runs_per_day=10**9, steps_per_run=10**6)
ESTIMATE = {"USD": 1_000}


def request(run: int) -> ReserveRequest:
    lines = [
        BudgetLine("tenant", "acme", "USD", "month", 2**51),
        BudgetLine("run", f"r{run}", "USD", "none", 10**9),
    ]
    return ReserveRequest(
        "acme", f"c{run}", lines, [Candidate(ESTIMATE)], run=f"r{run}", quotas=QUOTAS
    )


async def call(ledger: MemoryLedger, run: int) -> int:
    """Reserve for a new run (timed, ns), then commit it."""
    started = time.perf_counter_ns()
    result = await ledger.reserve(request(run))
    took = time.perf_counter_ns() - started
    assert result.reservation is not None
    await ledger.commit(result.reservation, ESTIMATE)
    return took


async def measure(sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    ledger = MemoryLedger(ReservationSettings(), "bench")
    runs, rows = 0, []
    for size in sizes:
        while runs < size:
            await call(ledger, runs)
            runs += 1
        times = sorted([await call(ledger, runs + i) for i in range(SAMPLE)])
        runs += SAMPLE
        rows.append(
            {
                "runs": size,
                "median_us": round(statistics.median(times) / 1000, 1),
                "p99_us": round(times[int(len(times) * 0.99)] / 1000, 1),
            }
        )
        print(f"{size:>7} runs: {rows[-1]}", file=sys.stderr)
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, str]) -> str:
    flat = rows[-1]["median_us"] / rows[0]["median_us"]
    lines = [
        "# memory:// reserve time against the number of runs of one tenant",
        "",
        f"`python -m benchmarks.memory_runs`, commit {meta['commit']}, Python {meta['python']}, "
        f"{SAMPLE} reserves timed at each size (a reserve of a new run; each call then committed).",
        "",
        "| runs of the tenant | reserve p50 | reserve p99 |",
        "|--:|--:|--:|",
        *(f"| {r['runs']:,} | {r['median_us']} µs | {r['p99_us']} µs |" for r in rows),
        "",
        f"Median at {rows[-1]['runs']:,} runs ÷ median at {rows[0]['runs']:,}: {flat:.2f}. "
        f"Load average at the end of the run: {meta['load']} (on a shared machine the p99 is "
        "mostly other processes' time slices).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_runs", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="stop at 10 000 runs")
    parser.add_argument("--out", type=Path, help="directory for memory_runs.{json,md}")
    args = parser.parse_args()
    out: Path = args.out or (HERE / "results" if args.quick else HERE)
    rows = asyncio.run(measure(QUICK_SIZES if args.quick else SIZES))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    meta = {
        "commit": commit or "unknown",
        "python": platform.python_version(),
        "load": f"{os.getloadavg()[0]:.1f}",
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory_runs.json").write_bytes(
        orjson.dumps({"meta": meta, "rows": rows}, option=orjson.OPT_INDENT_2) + b"\n"
    )
    (out / "memory_runs.md").write_text(markdown(rows, meta))
    print(f"wrote {out / 'memory_runs.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
