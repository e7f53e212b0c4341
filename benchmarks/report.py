"""Results → markdown: the tables, and each figure next to its target from issue 7."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from benchmarks import side_by_side

CYCLES = ("cycles-memory", "cycles-redis")
ADDED_P50_MS, ADDED_P99_MS = 0.8, 1.5
CPU_RATIO = 1.5
RSS_MIB, FLAT_MIB = 160.0, 5.0
ROUND_TRIPS = 2.0
WORKERS_CPU, SECOND_WORKER_MIB = 0.10, 40.0


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _us(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _added(results: dict[str, Any], target: str, mode: str, key: str) -> float | None:
    value = results["targets"][target][mode][key]
    base = results["targets"]["direct"][mode][key]
    return None if value is None or base is None else round(value - base, 3)


def _cpu_ratio(results: dict[str, Any], target: str, mode: str, c: int) -> float | None:
    cpu = results["targets"][target][mode]["cpu_us_per_request"]
    floor = results["targets"]["passthrough"][mode]["cpu_us_per_request"]
    if cpu.get(str(c)) is None or not floor.get(str(c)):
        return None
    return round(float(cpu[str(c)]) / float(floor[str(c)]), 2)


def _cpu(figures: dict[str, Any], c: int) -> float | None:
    value: float | None = figures["cpu_us_per_request"].get(str(c))
    return value


def _store_cpu(figures: dict[str, Any]) -> str:
    cpu = figures.get("store_cpu_us_per_request", {})
    if cpu.get("16") is None:
        return "–"
    return f"{cpu['16']:.0f} / {cpu['64']:.0f}"


def _rps(figures: dict[str, Any], c: int) -> float:
    value: float = figures["rps"][str(c)]
    return value


def latency_table(results: dict[str, Any]) -> Iterator[str]:
    yield (
        "| target | mode | p50 | p99 | added p50 | added p99 | TTFB p50 | TTFB p99 "
        "| added TTFB p50 | added TTFB p99 |"
    )
    yield "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"
    for target, modes in results["targets"].items():
        for mode, f in modes.items():
            added = [
                _added(results, target, mode, k) if target != "direct" else None
                for k in ("latency_p50_ms", "latency_p99_ms", "ttfb_p50_ms", "ttfb_p99_ms")
            ]
            yield (
                f"| {target} | {mode} | {_ms(f['latency_p50_ms'])} | "
                f"{_ms(f['latency_p99_ms'])} | {_ms(added[0])} | {_ms(added[1])} | "
                f"{_ms(f['ttfb_p50_ms'])} | {_ms(f['ttfb_p99_ms'])} | {_ms(added[2])} | "
                f"{_ms(added[3])} |"
            )


def throughput_table(results: dict[str, Any]) -> Iterator[str]:
    yield (
        "| target | mode | req/s c=16 | req/s c=64 | proxy CPU µs/req c=1 | proxy CPU µs/req c=16 "
        "| proxy CPU µs/req c=64 | × passthrough c=1 / c=16 / c=64 "
        "| Redis CPU µs/req c=16 / c=64 |"
    )
    yield "|---|---|--:|--:|--:|--:|--:|--:|--:|"
    for target, modes in results["targets"].items():
        for mode, f in modes.items():
            ratios = "–"
            if target not in ("direct", "passthrough"):
                ratios = " / ".join(str(_cpu_ratio(results, target, mode, c)) for c in (1, 16, 64))
            yield (
                f"| {target} | {mode} | {_rps(f, 16):.0f} | {_rps(f, 64):.0f} | "
                f"{_us(_cpu(f, 1))} | {_us(_cpu(f, 16))} | {_us(_cpu(f, 64))} | {ratios} | "
                f"{_store_cpu(f)} |"
            )


def ledger_table(results: dict[str, Any]) -> Iterator[str]:
    yield "| mode | calls counted | ledger round trips per call | by command | background |"
    yield "|---|--:|--:|---|---|"
    for mode, counted in results["ledger_calls"].items():
        by = ", ".join(f"{name} {n}" for name, n in counted["per_call"].items())
        background = ", ".join(f"{n}× {name}" for name, n in counted["background"].items())
        yield (
            f"| {mode} | {counted['calls']} | {counted['round_trips_per_call']:.3f} | "
            f"{by} | {background or '–'} |"
        )


def memory_table(results: dict[str, Any]) -> Iterator[str]:
    yield "| target | requests served | Rss MiB | Pss MiB | USS MiB |"
    yield "|---|--:|--:|--:|--:|"
    for target, readings in results["memory"].items():
        for r in readings:
            yield (
                f"| {target} | {r['requests']} | {r['rss']:.1f} | {r['pss']:.1f} | {r['uss']:.1f} |"
            )


def workers_table(results: dict[str, Any]) -> Iterator[str]:
    w = results["workers"]
    yield "| mode | 1 worker CPU µs/req | 2 workers CPU µs/req | change | req/s 1 / 2 workers |"
    yield "|---|--:|--:|--:|--:|"
    for mode, cpu in w["cpu_us_per_request"].items():
        rps = w["rps"][mode]
        yield (
            f"| {mode} | {_us(cpu['1'])} | {_us(cpu['2'])} | {_change(cpu) * 100:+.1f} % | "
            f"{rps['1']:.0f} / {rps['2']:.0f} |"
        )
    yield ""
    yield "| process | Rss MiB | Pss MiB | USS MiB |"
    yield "|---|--:|--:|--:|"
    for name, m in w["memory"].items():
        label = name if name == "one worker" else f"--workers 2: {name}"
        yield f"| {label} | {m['rss']:.1f} | {m['pss']:.1f} | {m['uss']:.1f} |"
    yield f"| --workers 2: the three processes | | {_group_pss(results):.1f} | |"


def _change(cpu: dict[str, float]) -> float:
    return cpu["2"] / cpu["1"] - 1


def _group_pss(results: dict[str, Any]) -> float:
    memory = results["workers"]["memory"]
    return float(sum(m["pss"] for name, m in memory.items() if name != "one worker"))


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def checks(results: dict[str, Any]) -> Iterator[tuple[str, str, str, bool]]:
    """(figure, target, measured, met) for every target of the issue."""
    for mode, (p50, p99) in (
        ("json", ("latency_p50_ms", "latency_p99_ms")),
        ("stream", ("ttfb_p50_ms", "ttfb_p99_ms")),
    ):
        what = "added latency" if mode == "json" else "added stream TTFB"
        a50, a99 = (_added(results, "cycles-redis", mode, k) for k in (p50, p99))
        yield (
            f"{what} p50, c=1, Redis",
            f"≤ {ADDED_P50_MS} ms",
            f"{_ms(a50)} ms",
            a50 is not None and a50 <= ADDED_P50_MS,
        )
        yield (
            f"{what} p99, c=1, Redis",
            f"≤ {ADDED_P99_MS} ms",
            f"{_ms(a99)} ms",
            a99 is not None and a99 <= ADDED_P99_MS,
        )
    for target in CYCLES:
        for mode in ("json", "stream"):
            ratios = [_cpu_ratio(results, target, mode, c) for c in (16, 64)]
            worst = max(r for r in ratios if r is not None)
            yield (
                f"CPU/request vs passthrough, {target}, {mode} (c=16 / c=64)",
                f"≤ {CPU_RATIO}×",
                f"{ratios[0]}× / {ratios[1]}×",
                worst <= CPU_RATIO,
            )
    for target, readings in results["memory"].items():
        first, last = readings[1], readings[-1]
        peak = max(r["rss"] for r in readings)
        yield (f"RSS, {target}, peak", f"≤ {RSS_MIB:.0f} MiB", f"{peak:.1f} MiB", peak <= RSS_MIB)
        growth = last["rss"] - first["rss"]
        yield (
            f"RSS growth {first['requests']} → {last['requests']} requests, {target}",
            f"flat (≤ {FLAT_MIB:.0f} MiB)",
            f"{growth:+.1f} MiB",
            growth <= FLAT_MIB,
        )
    for mode, counted in results["ledger_calls"].items():
        trips = counted["round_trips_per_call"]
        yield (
            f"ledger round trips per budgeted call, {mode}",
            f"= {ROUND_TRIPS:.0f}",
            f"{trips:.3f}",
            trips == ROUND_TRIPS,
        )
    yield from _worker_checks(results)


def _worker_checks(results: dict[str, Any]) -> Iterator[tuple[str, str, str, bool]]:
    w = results["workers"]
    for mode, cpu in w["cpu_us_per_request"].items():
        change = _change(cpu)
        yield (
            f"--workers 2 CPU/request vs 1 worker, {mode}",
            f"within {WORKERS_CPU:.0%}",
            f"{change * 100:+.1f} %",
            abs(change) <= WORKERS_CPU,
        )
    second = w["memory"]["worker-1"]["uss"]
    yield (
        "--workers 2: second worker's own memory (USS: pages not shared with the others)",
        f"≤ {SECOND_WORKER_MIB:.0f} MiB",
        f"{second:.1f} MiB",
        second <= SECOND_WORKER_MIB,
    )
    added = _group_pss(results) - w["memory"]["one worker"]["pss"]
    yield (
        "--workers 2 vs --workers 1, whole group with its parent (Σ Pss − Pss of one worker)",
        f"≤ {SECOND_WORKER_MIB:.0f} MiB",
        f"{added:.1f} MiB",
        added <= SECOND_WORKER_MIB,
    )


def checks_table(results: dict[str, Any]) -> Iterator[str]:
    yield "| figure | target | measured | |"
    yield "|---|---|---|---|"
    for figure, target, measured, ok in checks(results):
        yield f"| {figure} | {target} | {measured} | {_verdict(ok)} |"


def _noise(meta: dict[str, Any]) -> str:
    """How busy the rest of the machine was: other processes compete for both cores."""
    others = meta.get("other_processes_cpu_seconds")
    if others is None:
        return ""
    share = others / (meta["seconds"] * meta["cores"]) * 100 if meta.get("seconds") else 0.0
    return (
        f"Other processes on the machine used {others:.0f} CPU-seconds during the run "
        f"({share:.0f} % of its {meta['cores']} cores; load average at the end "
        f"{' '.join(meta['load_average_at_end'])}): the further from 0, the noisier the figures."
    )


def markdown(results: dict[str, Any], command: str) -> str:
    m = results["meta"]
    sections = [
        "# cycles-proxy benchmark results",
        "",
        f"`{command}` on {m['cpu']} ({m['cores']} cores), {m['date']}, commit {m['commit']}"
        f"{' (proxy/ modified)' if m['proxy_modified'] else ''}; Python {m['python']}, "
        f"aiohttp {m['aiohttp']}; load average at start {' '.join(m['load_average_at_start'])}. "
        "The proxy is pinned to core 0; the fake provider, Redis and the load generator to "
        "core 1. What each column means: benchmarks/README.md.",
        "",
        _noise(m),
        "",
        "## Side by side (issue 17)",
        "",
        *side_by_side.table(results),
        "",
        *side_by_side.notes(results),
        "",
        "## Against the targets (issue 7)",
        "",
        *checks_table(results),
        "",
        "## Latency at concurrency 1 (ms; added = this target's percentile − direct's)",
        "",
        *latency_table(results),
        "",
        "## Throughput and the proxy's CPU time per request",
        "",
        *throughput_table(results),
        "",
        "## Ledger round trips per budgeted call (cycles-redis, Redis MONITOR)",
        "",
        *ledger_table(results),
        "",
        "## Memory of the proxy process",
        "",
        *memory_table(results),
        "",
        "## `--workers 2` (Redis store, both workers on core 0)",
        "",
        *workers_table(results),
        "",
    ]
    return "\n".join(sections)
