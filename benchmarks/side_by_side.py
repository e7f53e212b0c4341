"""Results → the side-by-side table of issue 17: every target in one column, from one run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

COLUMNS = (
    ("direct", "direct"),
    ("passthrough", "bare aiohttp passthrough"),
    ("cycles-redis", "cycles-proxy (Redis)"),
    ("litellm", "LiteLLM proxy"),
)
NOT_MEASURED = "not measured"
NO_PROXY = ("direct",)
FLOORS = ("direct", "passthrough")

Cell = Callable[[dict[str, Any], str], str]
"""One row's cell, given the results and a target that was measured."""


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _latency(mode: str) -> Cell:
    def cell(results: dict[str, Any], target: str) -> str:
        f = results["targets"][target][mode]
        return f"{_num(f['latency_p50_ms'], 2)} / {_num(f['latency_p99_ms'], 2)}"

    return cell


def _cpu(mode: str, concurrency: tuple[int, ...]) -> Cell:
    def cell(results: dict[str, Any], target: str) -> str:
        cpu = results["targets"][target][mode]["cpu_us_per_request"]
        return " / ".join(_num(cpu.get(str(c)), 0) for c in concurrency)

    return cell


def _ratio(mode: str, concurrency: tuple[int, ...]) -> Cell:
    def cell(results: dict[str, Any], target: str) -> str:
        cpu = results["targets"][target][mode]["cpu_us_per_request"]
        floor = results["targets"]["passthrough"][mode]["cpu_us_per_request"]
        ratios = []
        for c in concurrency:
            ours, base = cpu.get(str(c)), floor.get(str(c))
            ratios.append("–" if ours is None or not base else f"{ours / base:.2f}×")
        return " / ".join(ratios)

    return cell


def _rss(results: dict[str, Any], target: str) -> str:
    reading = results.get("rss_at_end", {}).get(target)
    return "–" if reading is None else f"{reading['rss']:.1f} ({reading['requests']} calls)"


ROWS: tuple[tuple[str, Cell, tuple[str, ...]], ...] = (
    # (figure, cell, the targets it does not apply to)
    ("JSON, c=1, p50 / p99 (ms)", _latency("json"), ()),
    ("proxy CPU per call, JSON, c=1 / c=16 / c=64 (µs)", _cpu("json", (1, 16, 64)), NO_PROXY),
    ("the same ÷ the passthrough's", _ratio("json", (1, 16, 64)), FLOORS),
    ("stream (20 chunks), c=1, p50 / p99 (ms)", _latency("stream"), ()),
    ("proxy CPU per call, stream, c=1 / c=64 (µs)", _cpu("stream", (1, 64)), NO_PROXY),
    ("the same ÷ the passthrough's", _ratio("stream", (1, 64)), FLOORS),
    ("RSS after the run (MiB; calls served)", _rss, NO_PROXY),
)


def table(results: dict[str, Any]) -> Iterator[str]:
    """The table; a target the run did not measure has "not measured" in every row."""
    yield "| figure | " + " | ".join(label for _, label in COLUMNS) + " |"
    yield "|---|" + "--:|" * len(COLUMNS)
    for figure, cell, not_for in ROWS:
        cells = []
        for target, _ in COLUMNS:
            if target not in results["targets"]:
                cells.append(NOT_MEASURED)
            elif target in not_for:
                cells.append("–")
            else:
                cells.append(cell(results, target))
        yield f"| {figure} | " + " | ".join(cells) + " |"


def notes(results: dict[str, Any]) -> Iterator[str]:
    """What the table's columns are, and why LiteLLM is missing when it is."""
    litellm = results["meta"].get("litellm")
    lines = results.get("call_log_lines_per_call", {}).get("cycles-redis")
    yield (
        "cycles-proxy as in production: budgets on three levels (tenant, workflow, run), one JSON "
        f"log line per call (call lines written per call served: {_num(lines, 3)}), Redis store "
        "(memory:// is in the tables below). Every proxy is pinned to core 0 and gets the same "
        "load; direct has no proxy, so no proxy CPU or RSS."
    )
    yield ""
    if litellm is None:
        yield "LiteLLM was not part of this run (`python -m benchmarks --with-litellm` adds it)."
    elif not litellm["measured"]:
        yield f"LiteLLM was not measured: {litellm['why']}."
    else:
        yield (
            f"LiteLLM {litellm['version']} (`pip install '{litellm['requirement']}'` in its own "
            "venv): its proxy with its default server (uvicorn, one worker) and logging, a "
            "master key, no database, no callbacks (benchmarks/litellm_target.py)."
        )
