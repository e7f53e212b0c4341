"""OpenTelemetry's limits: the client's `traceparent` gives a trace its id but not its sampling
(unless the operator chose a parent-based sampler), and a collector that hangs or trickles
cannot keep a stopping proxy waiting longer than tracing.STOP_SECONDS."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import aiohttp
import pytest
from otel_support import receiving
from support import policy

from proxy.gateway import tracing
from proxy.testing.local import local_stack

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
HEADERS = {"X-Cycles-Tenant": "alpha", "X-Cycles-Run": "r1", "Authorization": "Bearer unused"}
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


async def post(url: str, extra: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url + "/v1/chat/completions", json=BODY, headers=HEADERS | (extra or {})
        ) as response,
    ):
        await response.read()
        return response.status


async def test_a_client_traceparent_not_sampled_still_traces_the_call_in_its_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with receiving(monkeypatch) as received, local_stack(pol, store=store_url) as stack:
        sent = {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-00"}
        assert await post(stack.url, sent) == 200
    span = received.named("chat gpt-4o-mini")
    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == CLIENT_SPAN


async def test_a_client_traceparent_sampled_does_not_override_the_operators_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    async with receiving(monkeypatch) as received, local_stack(pol, store=store_url) as stack:
        for i in range(3):
            assert (
                await post(stack.url, {"traceparent": f"00-{i + 1:032x}-{CLIENT_SPAN}-01"}) == 200
            )
    assert not received.spans, f"{len(received.spans)} spans exported at a 0 % sampling ratio"


async def test_an_operators_parent_based_sampler_follows_the_client_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    async with receiving(monkeypatch) as received, local_stack(pol, store=store_url) as stack:
        assert await post(stack.url, {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-00"}) == 200
    assert not received.spans


class Collector:
    """A 'collector' that accepts connections and never answers (`trickle`: answers 200 with a
    body it sends one byte a second, so no per-read timeout ever fires)."""

    def __init__(self, trickle: bool) -> None:
        self.trickle = trickle
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.conns: list[socket.socket] = []
        self.stop = False
        self.accepting = threading.Thread(target=self._accept, daemon=True)
        self.accepting.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            if self.trickle:
                threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not self.stop:
                conn.sendall(b"\x00")
                time.sleep(0.5)
        except OSError:
            pass

    def close(self) -> None:
        self.stop = True
        self.accepting.join()
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.mark.parametrize("trickle", [False, True], ids=["hanging", "trickling"])
async def test_stopping_waits_for_a_stuck_collector_no_longer_than_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str, trickle: bool
) -> None:
    collector = Collector(trickle)
    monkeypatch.setattr(tracing, "STOP_SECONDS", 1.0)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")  # only the bound stops the wait
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    try:
        async with local_stack(pol, store=store_url) as stack:
            for _ in range(3):
                assert await post(stack.url) == 200
            await asyncio.sleep(0.3)  # a batch is being exported: the collector is stuck
            stopping = time.monotonic()
        stopped = time.monotonic() - stopping
    finally:
        collector.close()
    assert stopped < 3.0, f"stopping took {stopped:.1f} s with the collector stuck"


async def test_an_export_to_a_hanging_collector_times_out_after_export_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    collector = Collector(trickle=False)
    monkeypatch.setattr(tracing, "STOP_SECONDS", 30.0)  # only the exports' timeout ends them
    monkeypatch.setattr(tracing, "EXPORT_SECONDS", 0.5)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TIMEOUT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    try:
        async with local_stack(pol, store=store_url) as stack:
            assert await post(stack.url) == 200
            await asyncio.sleep(0.3)
            stopping = time.monotonic()
        stopped = time.monotonic() - stopping
    finally:
        collector.close()
    assert stopped < 4.0, f"stopping took {stopped:.1f} s: the exports did not time out"
