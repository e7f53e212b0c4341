"""The metrics a call updates are plain numbers (proxy/gateway/tallies.py); /metrics shows them
exactly as prometheus-client's own Counter, Histogram and Gauge would."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from unittest import mock

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import chat, mini_cost, policy

from proxy.gateway import tallies
from proxy.testing.local import local_stack

BOUNDS = (0.005, 0.01, 0.025, 1, 2.5)
LABELS = st.sampled_from(["a", "b", 'c"\\'])
AMOUNTS = st.one_of(
    st.sampled_from([*BOUNDS, 0]), st.integers(0, 10**12), st.floats(0, 100, allow_nan=False)
)
UPDATES = st.lists(st.tuples(st.sampled_from(["inc", "observe", "up", "down"]), LABELS, AMOUNTS))


@given(UPDATES)
def test_tallies_expose_what_prometheus_client_would(updates: list[tuple[str, str, float]]) -> None:
    # One clock for both, so their _created samples agree.
    with mock.patch("time.time", return_value=1_700_000_000.25):
        theirs, ours = CollectorRegistry(), CollectorRegistry()
        counter = Counter("c", "Counted.", ["kind"], registry=theirs)
        histogram = Histogram("h", "Timed.", ["kind"], buckets=BOUNDS, registry=theirs)
        gauge = Gauge("g", "Level.", registry=theirs)
        tallied = tallies.counter("c", "Counted.", ["kind"])
        binned = tallies.histogram("h", "Timed.", ["kind"], BOUNDS)
        level = tallies.Level("g", "Level.")
        for collector in (tallied, binned, level):
            ours.register(collector)
        for op, label, amount in updates:
            if op == "inc":
                counter.labels(label).inc(amount)
                tallied.labels(label).inc(amount)
            elif op == "observe":
                histogram.labels(label).observe(amount)
                binned.labels(label).observe(amount)
            else:
                (gauge.inc if op == "up" else gauge.dec)()
                (level.inc if op == "up" else level.dec)()
        assert generate_latest(ours).decode() == generate_latest(theirs).decode()


def test_a_counter_refuses_a_negative_increment_as_prometheus_client_does() -> None:
    child = tallies.counter("c", "Counted.", ["kind"]).labels("a")
    with pytest.raises(ValueError, match="non-negative"):
        child.inc(-1)
    assert child.value == 0


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_scrape_right_after_a_burst_counts_every_call_of_it(tmp_path: Path) -> None:
    calls = 24
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:

        async def one() -> int:
            url = f"{stack.url}/v1/chat/completions"
            async with session.post(url, json=chat(), headers={"X-Cycles-Tenant": "alpha"}) as r:
                await r.read()
                return r.status

        assert await asyncio.gather(*(one() for _ in range(calls))) == [200] * calls
        async with session.get(f"{stack.url}/metrics") as r:
            samples = samples_of(await r.text())
        [row] = await stack.ledger.balances("alpha")
    spent = sum(mini_cost(b.prompt_tokens, b.completion_tokens) for b in stack.fake.billed)
    assert row.spent == spent
    call = (("decision", "ALLOW"), ("endpoint", "chat"), ("model", "gpt-4o-mini"))
    assert samples["cycles_requests_total", (*call, ("status", "200"))] == calls
    assert samples[
        "cycles_tenant_committed_units_total", (("tenant", "alpha"), ("unit", "USD"))
    ] == (spent)
    assert samples["cycles_upstream_seconds_count", (("endpoint", "chat"),)] == calls
    assert samples["cycles_ledger_seconds_count", (("op", "commit"),)] == calls
    assert samples["cycles_in_flight", ()] == 0


BUCKETS = (0.005, 0.01, 0.1, 1.0, 5.0)


def exposed(registry: CollectorRegistry) -> str:
    text = generate_latest(registry).decode()
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", text)  # creation times differ


@pytest.mark.parametrize("amounts", [[math.nan], [math.nan, 0.2]], ids=["nan", "nan-then-value"])
def test_a_nan_observation_is_in_no_bucket_as_prometheus_client_has_it(
    amounts: list[float],
) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    family = tallies.histogram("h_seconds", "help", ("op",), BUCKETS)
    ours.register(family)
    reference = Histogram("h_seconds", "help", ["op"], buckets=BUCKETS, registry=theirs)
    for label in ("plain", 'q"uote', "new\nline", "back\\slash", "", "ünï"):
        for amount in amounts:
            family.labels(label).observe(amount)
            reference.labels(label).observe(amount)
    assert exposed(ours) == exposed(theirs)


def test_label_values_are_exposed_as_str_makes_them() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    family = tallies.counter("c", "help", ("status",))
    ours.register(family)
    reference = Counter("c", "help", ["status"], registry=theirs)
    for value in (200, "200", 404):
        family.labels(value).inc()
        reference.labels(value).inc()
    assert exposed(ours) == exposed(theirs)
    assert 'c_total{status="200"} 2.0' in exposed(ours)
