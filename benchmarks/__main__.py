"""python -m benchmarks [--quick] [--with-litellm] [--out DIR]: run every benchmark, write JSON
and markdown.

The full run writes benchmarks/results.json and benchmarks/results.md (committed); --quick
writes to benchmarks/results/ (ignored by git) unless --out says otherwise. Process logs go to
benchmarks/results/logs/. --with-litellm adds LiteLLM's proxy as a target, installed once into
its own venv under benchmarks/results/ (benchmarks/litellm_target.py). `python -m
benchmarks.profile` profiles the proxy (see README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import orjson
import uvloop

from benchmarks import report
from benchmarks.run import FULL, QUICK, run

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument(
        "--with-litellm",
        action="store_true",
        help="add LiteLLM's proxy as a target (installed once into benchmarks/results/)",
    )
    parser.add_argument("--out", type=Path, help="directory for results.json and results.md")
    args = parser.parse_args()
    out: Path = args.out or (HERE / "results" if args.quick else HERE)
    log_dir = HERE / "results" / "logs"
    flags = [
        flag for flag, on in (("--quick", args.quick), ("--with-litellm", args.with_litellm)) if on
    ]
    command = " ".join(["python -m benchmarks", *flags])
    started = time.monotonic()
    uvloop.install()
    results = asyncio.run(run(QUICK if args.quick else FULL, log_dir, args.with_litellm))
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
    )
    (out / "results.md").write_text(report.markdown(results, command))
    print(
        f"wrote {out / 'results.json'} and {out / 'results.md'} "
        f"in {results['meta']['seconds']:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
