"""The pipeline's events (gateway/events.py): every budgeted call is told to the subscribers
once it is decided (or denied) and once it is settled, with what the ledger recorded; a
subscriber that fails never changes a call's answer or its charge."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
from support import chat, line, mini_cost, policy

from proxy.gateway.events import EVENTS, CallDecided, CallDenied, CallSettled, Event, Events
from proxy.testing.local import Stack, local_stack

ALPHA = {"X-Cycles-Tenant": "alpha"}


def recorded(events: Events) -> list[Event]:
    """Every event from now on, in order."""
    seen: list[Event] = []
    events.subscribe(CallDecided, seen.append)
    events.subscribe(CallDenied, seen.append)
    events.subscribe(CallSettled, seen.append)
    return seen


async def call(stack: Stack, body: dict[str, object]) -> int:
    async with aiohttp.ClientSession() as session:
        url = f"{stack.url}/v1/chat/completions"
        async with session.post(url, json=body, headers=ALPHA) as r:
            await r.read()
            return r.status


def billed(stack: Stack) -> int:
    return sum(mini_cost(b.prompt_tokens, b.completion_tokens) for b in stack.fake.billed)


async def test_a_call_is_told_to_subscribers_decided_then_settled_at_what_the_ledger_charged(
    tmp_path: Path, store_url: str
) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol, store=store_url, sweep_every=None) as stack:
        seen = recorded(stack.app[EVENTS])
        assert await call(stack, chat()) == 200
        row = await line(stack.ledger, "alpha", "tenant")
        decided, settled = seen
        assert isinstance(decided, CallDecided) and isinstance(settled, CallSettled)
        assert decided.tenant == settled.tenant == "alpha"
        assert decided.routed is not None and decided.routed.sent.model == "gpt-4o-mini"
        assert decided.reserved["USD"] > 0
        assert settled.charge is not None
        assert settled.charge["USD"] == billed(stack) == row.spent
        assert settled.timings is not None and settled.timings.endpoint == "chat"
        assert row.reserved == 0


async def test_a_call_its_budget_cannot_cover_is_told_denied_and_never_settled(
    tmp_path: Path, store_url: str
) -> None:
    pol = policy(tmp_path, "tenant: {limit: 0.000001, period: month}")
    async with local_stack(pol, store=store_url, sweep_every=None) as stack:
        seen = recorded(stack.app[EVENTS])
        assert await call(stack, chat()) == 402
        [denied] = seen
        assert isinstance(denied, CallDenied) and denied.tenant == "alpha"
        assert denied.denial.status == 402 and denied.result is not None
        assert denied.asked is not None and denied.asked.call.model == "gpt-4o-mini"
        assert stack.fake.calls == 0


async def test_a_failing_subscriber_never_changes_the_answer_or_the_charge(
    tmp_path: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Subscribers after the failing one still hear of the call; the call is answered and
    charged what the provider billed, and the failure is logged."""
    caplog.set_level(logging.ERROR)

    def broken(event: CallDecided | CallSettled) -> None:
        raise RuntimeError("a broken subscriber")

    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol, store=store_url, sweep_every=None) as stack:
        events = stack.app[EVENTS]
        events.subscribe(CallDecided, broken)
        events.subscribe(CallSettled, broken)
        seen = recorded(events)
        assert await call(stack, chat()) == 200
        row = await line(stack.ledger, "alpha", "tenant")
        assert (row.spent, row.reserved) == (billed(stack), 0)
        assert [type(event) for event in seen] == [CallDecided, CallSettled]
    assert "a subscriber to CallDecided failed" in caplog.text
    assert "a subscriber to CallSettled failed" in caplog.text
