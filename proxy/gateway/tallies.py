"""The metrics a call updates, kept as plain numbers and turned into samples when scraped.

prometheus-client's Counter, Gauge and Histogram check on every update that the metric may be
observed, take a lock, and (a histogram) walk its buckets one by one: the 18 updates of one call
cost 8 µs of CPU, 2.6 µs here (benchmarks/README.md). Here an update adds to a number (a
histogram finds its bucket by bisection), and each family is a collector that builds its samples
at scrape time, sample for sample as prometheus-client does (the same names, labels, order and
`_created` series), so what /metrics shows is unchanged. Updates and scrapes run on the event
loop's thread: no lock is needed, and a scrape always sees every update made before it.

A child's label set is resolved once: the label values are bounded (tenants and models are
capped by FirstSeen in metrics.py).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from prometheus_client import metrics as _client
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class CounterChild:
    """One label set's count."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount

    def samples(self, metric: Metric, name: str, labels: dict[str, str]) -> None:
        metric.add_sample(name + "_total", labels, self.value)
        if _client._use_created:
            metric.add_sample(name + "_created", labels, self.created)


class HistogramChild:
    """One label set's observations: a count per bucket (not cumulated) and their sum."""

    __slots__ = ("bounds", "counts", "created", "les", "sum")

    def __init__(self, bounds: tuple[float, ...], les: tuple[str, ...]) -> None:
        self.bounds, self.les = bounds, les
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        """Counted in the first bucket whose upper bound is at least `amount`; NaN, which is
        at most no bound, in none (but in the sum), as prometheus-client does."""
        self.sum += amount
        if amount == amount:  # not NaN
            self.counts[bisect_left(self.bounds, amount)] += 1

    def samples(self, metric: Metric, name: str, labels: dict[str, str]) -> None:
        cumulated = 0.0
        for le, count in zip(self.les, self.counts, strict=True):
            cumulated += count
            metric.add_sample(name + "_bucket", {**labels, "le": le}, cumulated)
        metric.add_sample(name + "_count", labels, cumulated)
        metric.add_sample(name + "_sum", labels, self.sum)
        if _client._use_created:
            metric.add_sample(name + "_created", labels, self.created)


C = TypeVar("C", CounterChild, HistogramChild)


class Family(Collector, Generic[C]):
    """A counter or histogram with labels: `labels(*values)` is the child to update."""

    def __init__(
        self,
        name: str,
        documentation: str,
        kind: str,
        labelnames: Iterable[str],
        new: Callable[[], C],
    ) -> None:
        self.name, self.documentation, self.kind = name, documentation, kind
        self.labelnames = tuple(labelnames)
        self._new: Callable[[], C] = new
        self._children: dict[tuple[str, ...], C] = {}

    def labels(self, *values: object) -> C:
        """The child of these label values, each as str() makes it (as prometheus-client)."""
        child = self._children.get(values)  # type: ignore[arg-type]
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, given {values}")
            texts = tuple(str(value) for value in values)
            child = self._children.get(texts)
            if child is None:
                child = self._children[texts] = self._new()
        return child

    def describe(self) -> Iterable[Metric]:
        return [Metric(self.name, self.documentation, self.kind)]

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.documentation, self.kind)
        for values, child in self._children.items():
            child.samples(metric, self.name, dict(zip(self.labelnames, values, strict=True)))
        return [metric]


def counter(name: str, documentation: str, labelnames: Iterable[str]) -> Family[CounterChild]:
    return Family(name, documentation, "counter", labelnames, CounterChild)


def histogram(
    name: str, documentation: str, labelnames: Iterable[str], buckets: Iterable[float]
) -> Family[HistogramChild]:
    """Buckets as prometheus-client takes them: ascending upper bounds, +Inf added if missing."""
    bounds = [float(b) for b in buckets]
    if bounds != sorted(bounds):
        raise ValueError(f"{name}: buckets not in ascending order")
    if not bounds or bounds[-1] != math.inf:
        bounds.append(math.inf)
    frozen = tuple(bounds)
    les = tuple(floatToGoString(b) for b in frozen)  # type: ignore[no-untyped-call]
    return Family(name, documentation, "histogram", labelnames, lambda: HistogramChild(frozen, les))


class Level(Collector):
    """A gauge without labels, moved up and down by one (calls in flight)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1

    def describe(self) -> Iterable[Metric]:
        return [Metric(self.name, self.documentation, "gauge")]

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.documentation, "gauge")
        metric.add_sample(self.name, {}, float(self.value))
        return [metric]
