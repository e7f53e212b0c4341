"""Streams: exact settlement, a client that leaves mid-stream, upstreams that report no usage."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from support import chat, chat_prompt_tokens, line, mini_cost, mini_reserved, policy, settled

from proxy.core import encodings
from proxy.gateway.context import RUNTIME
from proxy.testing.fake_upstream import WORD, FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

BUDGET = "tenant: {limit: 50, period: month}"
ALPHA = {"X-Cycles-Tenant": "alpha"}


async def leave_after_three_events(url: str, body: dict[str, object]) -> bytes:
    """Start a stream as alpha and go away once three events have arrived; what they were."""
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{url}/v1/chat/completions", json=body, headers=ALPHA)
        assert response.status == 200
        received = b""
        while received.count(b"\n\n") < 3:
            received += await response.content.readany()
        response.close()
    return received


def streamed_tokens(raw: bytes) -> int:
    """Completion tokens in the chat chunks of a (possibly cut) SSE body."""
    text = ""
    for event in raw.split(b"\n\n"):
        data = event.removeprefix(b"data: ")
        if data.startswith(b"{"):
            text += "".join(c["delta"].get("content") or "" for c in orjson.loads(data)["choices"])
    return len(encodings.get_encoding("o200k_base").encode_ordinary(text))


async def test_client_that_leaves_after_a_few_chunks_is_charged_the_whole_generation(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(chunks=40, chunk_delay=0.01))
    pol = policy(tmp_path, BUDGET)
    body = chat(max_tokens=80, stream=True)
    async with local_stack(pol, store=store_url, fake=fake) as stack:
        await leave_after_three_events(stack.url, body)
        row = await settled(stack.ledger, "alpha")
        assert fake.billed[0].completion_tokens == 80
        assert (row.spent, row.reserved) == (mini_cost(chat_prompt_tokens(body), 80), 0)


async def test_client_that_leaves_early_is_charged_the_usage_reported_after_it_left(
    tmp_path: Path, store_url: str
) -> None:
    """The proxy reads on, without relaying, to the provider's usage report: the charge is what
    the provider billed, which is more than the client saw and less than the reservation."""
    # 40 of the 80 reserved tokens, 2 per chunk, one chunk every 50 ms: 1 s of generation.
    fake = FakeUpstream(FakeSettings(chunks=20, chunk_delay=0.05, completion_fraction=0.5))
    pol = policy(tmp_path, BUDGET)
    body = chat(max_tokens=80, stream=True)
    async with local_stack(pol, store=store_url, fake=fake) as stack:
        received = await leave_after_three_events(stack.url, body)  # 6 tokens
        row = await settled(stack.ledger, "alpha")
    prompt = chat_prompt_tokens(body)
    assert [b.completion_tokens for b in fake.billed] == [40]
    assert streamed_tokens(received) < 40
    assert (row.spent, row.reserved) == (mini_cost(prompt, 40), 0)
    assert row.spent < mini_cost(prompt, 80)


async def test_usage_report_below_the_streamed_text_is_charged_the_streamed_text(
    tmp_path: Path, store_url: str
) -> None:
    """A report of 10 completion tokens beside 40 streamed ones: the text is evidence, so the
    charge is at least the 40 streamed."""
    fake = FakeUpstream(FakeSettings(underreport_completion=30))
    pol = policy(tmp_path, BUDGET)
    async with local_stack(pol, store=store_url, fake=fake) as stack:
        async with openai.AsyncOpenAI(
            base_url=stack.url + "/v1",
            api_key="unused",
            default_headers=ALPHA,
        ) as client:
            stream = await client.chat.completions.create(
                **chat(max_tokens=40), stream=True, stream_options={"include_usage": True}
            )
            chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == WORD * 40
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens == 10
        row = await settled(stack.ledger, "alpha")
    assert [b.completion_tokens for b in fake.billed] == [40]
    assert (row.spent, row.reserved) == (mini_cost(chat_prompt_tokens(chat()), 40), 0)


async def test_stream_without_usage_is_charged_by_counting_its_text(tmp_path: Path) -> None:
    fake = FakeUpstream(FakeSettings(send_usage=False, completion_fraction=0.5))
    pol = policy(tmp_path, BUDGET)
    body = chat(max_tokens=40, stream=True)
    async with local_stack(pol, fake=fake) as stack, aiohttp.ClientSession() as session:
        async with session.post(f"{stack.url}/v1/chat/completions", json=body, headers=ALPHA) as r:
            raw = await r.read()
        assert b'"usage"' not in raw
        row = await settled(stack.ledger, "alpha")
        counted = len(encodings.get_encoding("o200k_base").encode_ordinary(WORD * 20))
        assert counted == 20
        # The prompt as it was reserved: no report says the provider did not write it.
        assert row.spent == mini_reserved(chat_prompt_tokens(body), counted)


class IgnoresStream(FakeUpstream):
    """A server that ignores `stream: true`: every call gets one JSON answer, with no usage."""

    def app(self) -> web.Application:
        async def answer(request: web.Request) -> web.Response:
            self.requests.append((request.path, dict(request.headers), await request.json()))
            message = {"role": "assistant", "content": WORD * 40}
            choice = {"index": 0, "message": message, "finish_reason": "length"}
            return web.json_response({"object": "chat.completion", "choices": [choice]})

        app = web.Application()
        app.router.add_post("/v1/chat/completions", answer)
        return app


@pytest.mark.parametrize("stream", [False, True])
async def test_whole_answer_without_usage_is_charged_the_reservation_even_to_a_stream_request(
    tmp_path: Path, stream: bool
) -> None:
    """No usage report and no stream whose text was counted: the charge is the reservation,
    whether or not the client asked for a stream (not the prompt alone)."""
    pol = policy(tmp_path, BUDGET)
    body = chat(max_tokens=40, stream=stream)
    async with local_stack(pol, fake=IgnoresStream()) as stack, aiohttp.ClientSession() as session:
        async with session.post(f"{stack.url}/v1/chat/completions", json=body, headers=ALPHA) as r:
            assert r.status == 200
            await r.read()
        row = await settled(stack.ledger, "alpha")
        assert row.spent == mini_reserved(chat_prompt_tokens(body), 40)


async def test_events_reach_the_client_before_the_stream_ends(tmp_path: Path) -> None:
    """Relayed as they arrive, not buffered: the first event is readable while the upstream is
    still generating."""
    fake = FakeUpstream(FakeSettings(chunks=10, chunk_delay=0.2))
    pol = policy(tmp_path, BUDGET)
    async with local_stack(pol, fake=fake) as stack, aiohttp.ClientSession() as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with session.post(
            f"{stack.url}/v1/chat/completions",
            json=chat(max_tokens=10, stream=True),
            headers=ALPHA,
        ) as r:
            first = await r.content.readline()
            first_at = loop.time() - started
            await r.read()
            total = loop.time() - started
        assert first.startswith(b"data: ")
        assert first_at < total / 2


async def test_upstream_error_releases_and_passes_the_status_through(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(fail_status=503))
    pol = policy(tmp_path, BUDGET)
    async with (
        local_stack(pol, store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as session,
    ):
        for stream in (False, True):
            async with session.post(
                f"{stack.url}/v1/chat/completions",
                json=chat(stream=stream),
                headers=ALPHA,
            ) as r:
                assert r.status == 503
                message = (await r.json())["error"]["message"]
                # A 5xx is always told in the proxy's words (provider_errors): never the provider's.
                assert "provider" in message and "503" in message, message
        row = await line(stack.ledger, "alpha", "tenant")
        assert (row.spent, row.reserved) == (0, 0)


async def test_unreachable_upstream_is_502_and_nothing_charged(
    tmp_path: Path, store_url: str
) -> None:
    pol = policy(tmp_path, BUDGET)
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as session:
        dead = {
            name: dataclasses.replace(upstream, base_url="http://127.0.0.1:9/v1")
            for name, upstream in stack.policy.upstreams.items()
        }
        rt = stack.app[RUNTIME]
        rt.policy = dataclasses.replace(rt.policy, upstreams=dead)
        async with session.post(
            f"{stack.url}/v1/chat/completions", json=chat(), headers=ALPHA
        ) as r:
            assert r.status == 502
            assert "could not be reached" in (await r.json())["error"]["message"]
        row = await line(stack.ledger, "alpha", "tenant")
        assert (row.spent, row.reserved) == (0, 0)
