"""An error the provider sends in the middle of a stream (OpenAI's `data: {"error": ...}`,
Anthropic's and the Responses API's `event: error`), or inside a 200 (a Responses answer whose
status is `failed`, streamed as `response.failed`; an `error` at the top of any whole answer),
reaches the tenant in its own shape but scrubbed as an error answer is: nothing of the shared
account (its organisation, limits and usage), the original in the operator's log. The call is
charged as it would be without it."""

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


IN_A_200 = {
    **FAILED,
    "type": "tokens",
    "metadata": {"provider_name": "OpenAI", "raw": "organization org-fake-shared-account"},
}
"""An error inside a 200 as OpenRouter passes one on: the provider's, with its raw answer."""
WHOLE: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", chat(max_tokens=20)),
    "completions": ("/v1/completions", {"model": "gpt-4o-mini", "prompt": "hi", "max_tokens": 20}),
    "responses": (
        "/v1/responses",
        {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 20},
    ),
}


@pytest.mark.parametrize("endpoint", list(WHOLE))
async def test_an_error_at_the_top_of_a_whole_200_reaches_the_tenant_scrubbed_and_charged(
    tmp_path: Path, store_url: str, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A whole 200 answer with an `error` object at its top (OpenRouter's choices ending in
    `finish_reason: error`; a Responses answer `incomplete`, not `failed`, with its error): the
    tenant gets that answer with the error scrubbed and nothing else of it changed; the charge
    is what the provider billed, read from the original."""
    path, body = WHOLE[endpoint]
    settings = FakeSettings(response_error=IN_A_200, response_error_status="incomplete")
    fake = FakeUpstream(settings)
    caplog.set_level(logging.INFO)
    async with (
        local_stack(shapes_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(stack.url + path, json=body, headers=HEADERS) as r:
            assert (r.status, r.content_type) == (200, "application/json")
            text = await r.text()
        row = await settled(stack.ledger)
    assert not [word for word in (*ACCOUNT_WORDS, "sk-proj") if word in text], text
    answer = orjson.loads(text)
    error = answer["error"]
    assert set(error) == {"code", "message", "type"}, "metadata is dropped"
    assert error["code"] == "rate_limit_exceeded"
    assert "provider" in error["message"] and "rate limit" in error["message"]
    if endpoint == "responses":
        assert answer["status"] == "incomplete" and answer["output"]
    else:
        assert [c["finish_reason"] for c in answer["choices"]] == ["error"]
    assert answer["usage"]["completion_tokens" if endpoint != "responses" else "output_tokens"]
    assert FAILED["message"][:60] in caplog.text and "sk-proj-fake" not in caplog.text
    [billed] = fake.billed
    assert (row.spent, row.reserved) == (billed_cost(billed), 0)


async def test_a_whole_200_naming_an_error_that_is_not_json_fails_closed(
    tmp_path: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 200 that names an error but is no JSON object cannot be scrubbed field by field: the
    tenant gets a generic error in the API's shape, never the provider's text; the log has it;
    the call is charged its reservation (no usage to read), as any unreadable answer is."""
    said = 'upstream "error": rate limit for organization org-fake-shared-account (TPM 30000)'
    fake = FakeUpstream(FakeSettings(response_error=said))
    caplog.set_level(logging.INFO)
    async with (
        local_stack(shapes_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as session,
    ):
        path, body = WHOLE["chat"]
        async with session.post(stack.url + path, json=body, headers=HEADERS) as r:
            assert (r.status, r.content_type) == (200, "application/json")
            text = await r.text()
        row = await settled(stack.ledger)
    assert not [word for word in ACCOUNT_WORDS if word in text], text
    error = orjson.loads(text)["error"]
    assert error["code"] == "provider_error" and "provider" in error["message"]
    assert said in caplog.text
    assert row.reserved == 0 and row.spent > 0


async def test_a_failed_response_event_with_an_error_beside_it_has_both_scrubbed(
    tmp_path: Path,
) -> None:
    """A `response.failed` event that also carries the error at its top: both are scrubbed."""
    settings = FakeSettings(response_error=IN_A_200, response_error_beside=True)
    async with (
        local_stack(shapes_policy(tmp_path), fake=FakeUpstream(settings)) as stack,
        aiohttp.ClientSession() as session,
    ):
        path, body = WHOLE["responses"]
        async with session.post(
            stack.url + path, json={**body, "stream": True}, headers=HEADERS
        ) as r:
            text = await r.text()
    assert not [word for word in (*ACCOUNT_WORDS, "sk-proj") if word in text], text
    last = orjson.loads(text.rstrip().rsplit("data: ", 1)[1])
    assert last["type"] == "response.failed"
    for error in (last["error"], last["response"]["error"]):
        assert error["code"] == "rate_limit_exceeded" and "provider" in error["message"]
