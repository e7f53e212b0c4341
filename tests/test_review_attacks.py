"""Adversarial review of "delivered means billable" and "prices" (issue 13): each test states the
promise (billed ≤ charged ≤ reserved; what is not modelled is refused with a 4xx) for one call
that breaks it, and fails while it is broken."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import aiohttp
from prices_support import POLICY, billed_cost, measured

from proxy.fake_upstream import FakeSettings, FakeUpstream
from proxy.local import local_stack
from proxy.policy import load_policy
from proxy.policy.runtime import Policy

LATENCY = 0.15
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
UNITS = 10**8


def review_policy(tmp_path: Path, models: str = "", top: str = "") -> Policy:
    """The prices policy (tests/prices_support.py) with more models and top-level settings."""
    text = POLICY.replace("{limit}", "50")
    text = text.replace("models:\n", "models:\n" + models, 1)
    path = tmp_path / "policy.yaml"
    path.write_text(text + top)
    return load_policy(path)


def _ceil(value: Fraction) -> int:
    return -(-value.numerator // value.denominator)


# -- streams with running usage, cut before their end --------


STREAM_TIMEOUTS = "timeouts: {chunk_idle: 0.3}\n"


async def test_a_stream_with_running_usage_cut_early_is_charged_its_reservation(
    tmp_path: Path, store_url: str
) -> None:
    """A provider with running usage on every chunk (vLLM continuous usage stats) goes silent
    past chunk_idle: the proxy cuts the stream. The provider bills the whole generation, but
    settle.charge_for charges the last running usage it saw (a partial count), because any
    usage report wins over the `complete` flag: billed > charged."""
    fake = FakeUpstream(
        FakeSettings(latency=LATENCY, continuous_usage=True, chunks=5, chunk_delay=0.6)
    )
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Count to forty."}],
        "max_completion_tokens": 40,
        "stream": True,
    }
    async with (
        local_stack(
            review_policy(tmp_path, top=STREAM_TIMEOUTS), store=store_url, fake=fake
        ) as stack,
        aiohttp.ClientSession() as http,
    ):
        call = await measured(http, stack.url + PATHS["chat"], stack.ledger, body)
    [billed] = fake.billed
    assert billed.completion_tokens == 40
    assert billed_cost(billed) <= call.charged <= call.reserved, (
        f"billed {billed_cost(billed)} (40 completion tokens), charged {call.charged}, "
        f"reserved {call.reserved}"
    )
