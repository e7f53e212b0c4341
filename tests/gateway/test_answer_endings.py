"""How a 200 answer that ends oddly is charged, and how long a reservation must live.

- A stream that ended cleanly right after OpenAI's usage chunk (some servers send no `[DONE]`)
  is charged its report: the usage chunk comes last, so nothing was cut.
- A stream that ended without any JSON event (headers, then nothing) is charged its
  reservation: the request was written, the provider answered 200 and may bill it.
- A whole answer cut off is 502 and charged its reservation; the proxy logs one warning line
  for it, not an error with a traceback.
- A stream may take `first_byte` for its headers, then `stream_total`: a policy whose
  reservations would not outlive that (plus `drain_after_disconnect`) is refused.

Charges are checked against what the fake provider billed, priced by the tests' own formula
(tests/prices_support.py)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prices_support import billed_cost, measured, prices_policy

from proxy.core.errors import PolicyError
from proxy.policy import load_policy
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

LATENCY = 0.15
"""Long enough to read a call's reservation while it is upstream."""
CHAT = "/v1/chat/completions"


def stream_body(**options: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Count to forty."}],
        "max_completion_tokens": 40,
        "stream": True,
        **({"stream_options": options} if options else {}),
    }


@pytest.mark.parametrize("asked", [True, False], ids=["client-asked-usage", "proxy-asked-usage"])
async def test_a_stream_that_ends_cleanly_after_its_usage_chunk_is_charged_its_report(
    tmp_path: Path, store_url: str, asked: bool
) -> None:
    """Half the limit generated, the usage chunk, then the end of the body without `[DONE]`:
    the report is the whole call's, so it is the charge (not the reservation, twice that)."""
    fake = FakeUpstream(FakeSettings(latency=LATENCY, completion_fraction=0.5, send_done=False))
    body = stream_body(include_usage=True) if asked else stream_body()
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + CHAT, stack.ledger, body)
    assert call.status == 200
    [billed] = fake.billed
    assert billed.completion_tokens == 20
    assert billed_cost(billed) == call.charged < call.reserved, (billed, call)


async def test_a_stream_without_done_or_a_usage_report_is_still_charged_its_reservation(
    tmp_path: Path, store_url: str
) -> None:
    """No usage chunk and no `[DONE]`: nothing says the generation ended where the text did."""
    fake = FakeUpstream(
        FakeSettings(latency=LATENCY, completion_fraction=0.5, send_done=False, send_usage=False)
    )
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + CHAT, stack.ledger, stream_body())
    [billed] = fake.billed
    assert billed_cost(billed) < call.charged == call.reserved


class DoneOnly(FakeUpstream):
    """Bills like the fake, then answers a stream of nothing but `data: [DONE]`."""

    async def _generate(
        self, request: web.Request, endpoint: str, body: dict[str, Any] | None = None
    ) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, dict(request.headers), body))
        self._bill(endpoint, body, 10, 40)
        await asyncio.sleep(self.settings.latency)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@pytest.mark.parametrize("ending", ["nothing", "done-only"])
async def test_a_200_stream_without_any_event_is_charged_its_reservation(
    tmp_path: Path, store_url: str, ending: str
) -> None:
    """The provider answered 200 and sent no event (headers then the end, or only `[DONE]`):
    the request was written and answered, so the provider may bill the generation (the fake
    does); only an error status releases."""
    settings = FakeSettings(latency=LATENCY, cut_after=0)
    fake = FakeUpstream(settings) if ending == "nothing" else DoneOnly(settings)
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + CHAT, stack.ledger, stream_body())
    assert call.status == 200
    [billed] = fake.billed
    assert 0 < billed_cost(billed) <= call.charged == call.reserved


class CutWholeAnswer(FakeUpstream):
    """Bills like the fake, then sends the headers of a whole answer and a few bytes of its
    body, and resets the connection."""

    async def _generate(
        self, request: web.Request, endpoint: str, body: dict[str, Any] | None = None
    ) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, dict(request.headers), body))
        self._bill(endpoint, body, 10, 40)
        await asyncio.sleep(self.settings.latency)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 4096
        await response.prepare(request)
        await response.write(b'{"id": "chatcmpl-cut", "choices": [')
        assert request.transport is not None
        request.transport.abort()
        return response


async def test_a_cut_whole_answer_is_charged_and_logged_as_one_warning_line(
    tmp_path: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The 502 that tells the client its answer was cut is the call's answer, not a failure of
    the proxy: no ERROR, no traceback in the log."""
    fake = CutWholeAnswer(FakeSettings(latency=LATENCY))
    body = {**stream_body(), "stream": False}
    caplog.set_level(logging.WARNING)
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + CHAT, stack.ledger, body)
    assert call.status == 502
    assert "cut off" in call.answer["error"]["message"]
    assert billed_cost(fake.billed[0]) <= call.charged == call.reserved
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    [task] = [r for r in caplog.records if r.name == "proxy.core.tasks"]
    assert task.levelno == logging.WARNING and "502" in task.getMessage()


# -- a reservation outlives the longest stream -----------------------------------------------


def stream_policy(tmp_path: Path, top: str = "", route: str = "") -> Path:
    """The prices policy's file with `top` appended, and its first route replaced by `route`."""
    prices_policy(tmp_path)
    path = tmp_path / "policy.yaml"
    text = path.read_text()
    if route:
        text = text.replace('model: "claude-*", upstream: anthropic', route, 1)
    path.write_text(text + top)
    return path


def test_a_stream_s_first_byte_counts_toward_the_reservation_s_lifetime(tmp_path: Path) -> None:
    """connect 10 + first_byte 900 + stream_total 900 + drain_after_disconnect 60 > cap_seconds
    1800: a stream could still be running when its reservation is swept."""
    path = stream_policy(tmp_path, "timeouts: {first_byte: 900, stream_total: 900}\n")
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert (
        "reservations.cap_seconds (1800) must exceed timeouts.connect + timeouts.first_byte + "
        "timeouts.stream_total + timeouts.drain_after_disconnect (10 + 900 + 900 + 60 = 1870)"
        in str(refused.value)
    )
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--policy", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout
    assert "timeouts.first_byte + timeouts.stream_total" in result.stderr


def test_a_route_s_own_first_byte_counts_too(tmp_path: Path) -> None:
    route = (
        'model: "claude-*", upstream: anthropic, timeouts: {first_byte: 1000, stream_total: 800}'
    )
    path = stream_policy(tmp_path, route=route)
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert (
        "must exceed timeouts.connect + routes[0].timeouts.first_byte + "
        "routes[0].timeouts.stream_total + timeouts.drain_after_disconnect "
        "(10 + 1000 + 800 + 60 = 1870)" in str(refused.value)
    )
    path.write_text(path.read_text() + "reservations: {cap_seconds: 1871}\n")
    assert load_policy(path).timeouts_for("claude-sonnet-4").first_byte == 1000
