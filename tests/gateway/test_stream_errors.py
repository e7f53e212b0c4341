"""An error the provider sends in the middle of a stream (OpenAI's `data: {"error": ...}`,
Anthropic's and the Responses API's `event: error`), or inside a 200 (a Responses answer whose
status is `failed`, streamed as `response.failed`), reaches the tenant in its own shape but
scrubbed as an error answer is: nothing of the shared account (its organisation, limits and
usage), the original in the operator's log. The call is charged as it would be without it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from fields_support import billed_cost, shapes_policy
from support import chat, line, settled

from proxy.testing.fake_settings import ACCOUNT_RATE_LIMIT, ANTHROPIC_RATE_LIMIT
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

HEADERS = {"X-Cycles-Tenant": "alpha"}
ACCOUNT_WORDS = ("org-", "organization", "30000", "29000", "TPM", "40,000", "5d2c1a7e")
CALLS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", chat(max_tokens=40, stream=True), ACCOUNT_RATE_LIMIT),
    "messages": (
        "/v1/messages",
        {
            "model": "claude-sonnet-4",
            "max_tokens": 40,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        ANTHROPIC_RATE_LIMIT,
    ),
    "responses": (
        "/v1/responses",
        {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 40, "stream": True},
        ACCOUNT_RATE_LIMIT,
    ),
}


def error_events(text: str) -> list[dict[str, Any]]:
    """The data of every error event in an SSE body, whichever API's shape it has."""
    found = []
    for block in text.split("\n\n"):
        named = "event: error" in block
        for row in block.split("\n"):
            if row.startswith("data: {"):
                data = orjson.loads(row[6:])
                if named or "error" in data:
                    found.append(data)
    return found


@pytest.mark.parametrize("endpoint", list(CALLS))
async def test_an_error_event_mid_stream_reaches_the_tenant_scrubbed_and_charged_as_before(
    tmp_path: Path, store_url: str, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    path, body, error = CALLS[endpoint]
    fake = FakeUpstream(FakeSettings(chunks=4, cut_after=1, stream_error=error))
    caplog.set_level(logging.INFO)
    async with (
        local_stack(shapes_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(stack.url + path, json=body, headers=HEADERS) as r:
            assert r.status == 200
            text = await r.text()
        with_error = await line(stack.ledger, "alpha", "tenant")
        fake.settings.stream_error = None
        async with session.post(stack.url + path, json=body, headers=HEADERS) as r:
            assert r.status == 200
            await r.read()
        both = await line(stack.ledger, "alpha", "tenant")
    assert not [word for word in ACCOUNT_WORDS if word in text], text
    [event] = error_events(text)
    inner = event.get("error", event)
    assert "provider" in inner["message"] and "rate limit" in inner["message"]
    if endpoint == "messages":
        assert event["type"] == "error" and inner["type"] == "rate_limit_error"
    elif endpoint == "responses":
        assert event["type"] == "error" and event["code"] == "rate_limit_exceeded"
    else:
        assert inner["code"] == "rate_limit_exceeded"
    assert error["message"][:40] in caplog.text
    assert with_error.reserved == 0 and with_error.spent > 0
    assert both.spent == 2 * with_error.spent, "the error event changed what the stream cost"


FAILED = {
    "code": "rate_limit_exceeded",
    "message": ACCOUNT_RATE_LIMIT["message"] + " Key: sk-proj-fakeSharedKey0123456789.",
}
"""A Responses failure that names the shared account, its limit and usage, and its key."""


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_a_failed_response_reaches_the_tenant_scrubbed_and_charged_what_was_billed(
    tmp_path: Path, store_url: str, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A Responses answer can fail inside a 200: `status: failed` with an `error` object in the
    whole answer, `event: response.failed` ending a stream. The openai SDK hands the tenant that
    response (a stream still ends with its `response.failed` event), its error scrubbed and its
    code kept; the log has the original without the key; the usage it reports is charged."""
    fake = FakeUpstream(FakeSettings(response_error=FAILED))
    caplog.set_level(logging.INFO)
    async with (
        local_stack(shapes_policy(tmp_path), store=store_url, fake=fake) as stack,
        openai.AsyncOpenAI(
            base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
        ) as sdk,
    ):
        asked: dict[str, Any] = {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 20}
        if stream:
            events = [event async for event in await sdk.responses.create(**asked, stream=True)]
            assert events[-1].type == "response.failed"
            answer = events[-1].response
            seen = "".join(event.model_dump_json() for event in events)
        else:
            answer = await sdk.responses.create(**asked)
            seen = answer.model_dump_json()
        row = await settled(stack.ledger)
    assert not [word for word in (*ACCOUNT_WORDS, "sk-proj") if word in seen], seen
    assert answer.status == "failed" and answer.error is not None
    assert answer.error.code == "rate_limit_exceeded"
    assert "provider" in answer.error.message and "rate limit" in answer.error.message
    assert FAILED["message"][:60] in caplog.text and "sk-proj-fake" not in caplog.text
    [billed] = fake.billed
    assert (row.spent, row.reserved) == (billed_cost(billed), 0)


async def test_a_failed_response_about_the_request_keeps_its_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure about the call itself (`invalid_prompt`) keeps the provider's words, as a 400
    error answer does: they say what to change."""
    said = "Invalid prompt: your prompt was flagged as potentially violating our usage policy."
    fake = FakeUpstream(FakeSettings(response_error={"code": "invalid_prompt", "message": said}))
    async with (
        local_stack(shapes_policy(tmp_path), fake=fake) as stack,
        openai.AsyncOpenAI(
            base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
        ) as sdk,
    ):
        stream = await sdk.responses.create(
            model="gpt-4o-mini", input="hi", max_output_tokens=20, stream=True
        )
        events = [event async for event in stream]
    error = events[-1].response.error
    assert error is not None and (error.code, error.message) == ("invalid_prompt", said)
