"""The provider's error answers reach a tenant in the API's own error shape, without what they
say about the account every tenant shares (its organisation, its rate limits and usage), which
goes to the operator's log instead (issue 14, item 9). Messages about the call itself are
kept. The refused calls are released: nothing charged."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from fields_support import shapes_policy
from support import chat, line

from proxy.testing.fake_settings import ACCOUNT_RATE_LIMIT, ANTHROPIC_RATE_LIMIT
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

HEADERS = {"X-Cycles-Tenant": "alpha"}
ACCOUNT_WORDS = (
    "org-",
    "organization",
    "30000",
    "29000",
    "TPM",
    "40,000",
    "5d2c1a7e",
    "rate-limits",
)
"""What the provider's account answers say that no tenant may read."""


def assert_no_account_detail(text: str) -> None:
    assert not [word for word in ACCOUNT_WORDS if word in text], text


async def anthropic_refusal(
    tmp_path: Path,
    status: int,
    error: dict[str, Any],
    expected: type[anthropic.APIStatusError],
) -> tuple[anthropic.APIStatusError, Any]:
    """What the anthropic SDK raises (`expected`) for one call whose provider answered `status`
    with `error`, and alpha's tenant line after it."""
    fake = FakeUpstream(FakeSettings(fail_status=status, fail_error=error))
    async with local_stack(shapes_policy(tmp_path), fake=fake) as stack:
        sdk = anthropic.AsyncAnthropic(
            base_url=stack.url, api_key="unused", default_headers=HEADERS, max_retries=0
        )
        async with sdk:
            with pytest.raises(expected) as raised:
                await sdk.messages.create(
                    model="claude-sonnet-4",
                    max_tokens=20,
                    messages=[{"role": "user", "content": "hi"}],
                )
        row = await line(stack.ledger, "alpha", "tenant")
    return raised.value, row


async def test_an_account_rate_limit_on_openai_reaches_the_tenant_without_the_account(
    tmp_path: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenAI's 429 names the shared organisation and its TPM limit and usage: the tenant gets a
    429 in OpenAI's shape that keeps the code (so SDKs still know it is a rate limit) and
    Retry-After, and says the provider is limiting; the operator's log keeps the original."""
    fake = FakeUpstream(FakeSettings(fail_status=429, fail_error=ACCOUNT_RATE_LIMIT))
    pol = shapes_policy(tmp_path)
    caplog.set_level(logging.INFO)
    async with local_stack(pol, store=store_url, fake=fake) as stack:
        sdk = openai.AsyncOpenAI(
            base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
        )
        async with sdk:
            with pytest.raises(openai.RateLimitError) as raised:
                await sdk.chat.completions.create(**chat(max_tokens=10))
        row = await line(stack.ledger, "alpha", "tenant")
    assert_no_account_detail(raised.value.response.text)
    error = raised.value.body
    assert isinstance(error, dict) and set(error) == {"message", "type", "code", "param"}
    assert error["code"] == "rate_limit_exceeded"
    assert "rate limit" in error["message"].lower() and "provider" in error["message"]
    assert raised.value.response.headers["content-type"].startswith("application/json")
    assert "org-fake-shared-account" in caplog.text and "Used 29000" in caplog.text
    assert (row.spent, row.reserved) == (0, 0)


async def test_an_account_rate_limit_on_anthropic_keeps_anthropics_shape(tmp_path: Path) -> None:
    error, row = await anthropic_refusal(
        tmp_path, 429, ANTHROPIC_RATE_LIMIT, anthropic.RateLimitError
    )
    assert_no_account_detail(error.response.text)
    body = error.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert "provider" in body["error"]["message"]
    assert (row.spent, row.reserved) == (0, 0)


async def test_an_account_answer_on_an_unbudgeted_path_is_scrubbed_too(tmp_path: Path) -> None:
    fake = FakeUpstream(FakeSettings(fail_status=429, fail_error=ACCOUNT_RATE_LIMIT))
    async with (
        local_stack(shapes_policy(tmp_path), fake=fake) as stack,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(stack.url + "/v1/models", headers=HEADERS) as r:
            assert r.status == 429
            text = await r.text()
        assert await stack.ledger.balances("alpha") == []
    assert_no_account_detail(text)
    assert orjson.loads(text)["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize(
    "error",
    [
        {
            "message": "Invalid value for 'temperature': expected a number at most 2.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
        },
        {
            "message": "The model `gpt-4o-mini` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        },
    ],
)
async def test_an_error_about_the_call_itself_is_relayed_as_the_provider_wrote_it(
    tmp_path: Path, error: dict[str, Any]
) -> None:
    fake = FakeUpstream(FakeSettings(fail_status=400, fail_error=error))
    async with (
        local_stack(shapes_policy(tmp_path), fake=fake) as stack,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(
            stack.url + "/v1/chat/completions", json=chat(max_tokens=5), headers=HEADERS
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"] == error
        row = await line(stack.ledger, "alpha", "tenant")
    assert (row.spent, row.reserved) == (0, 0)


@pytest.mark.parametrize(
    ("status", "error", "kept"),
    [
        (
            429,
            {
                "message": "You exceeded your current quota, please check your plan and billing "
                "details.",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            },
            ("invalid_request_error", "provider_error"),
        ),
        (
            401,
            {
                "message": "Incorrect API key provided: sk-fake-u*****************6789. You can "
                "find your API key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            },
            ("invalid_request_error", "provider_error"),
        ),
        (
            403,
            {
                "message": "Your organization org-abc123 must be verified to use the model `o3`.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
            ("invalid_request_error", "provider_error"),
        ),
        (
            404,
            {
                "message": "Project proj_AbC123 does not have access to model `gpt-4o`",
                "type": "invalid_request_error",
                "param": None,
                "code": "model_not_found",
            },
            ("invalid_request_error", "model_not_found"),
        ),
        (
            402,
            {
                "message": "This request requires more credits, or fewer max_tokens. You "
                "requested up to 4096 tokens, but can only afford 1234. To increase, visit "
                "https://openrouter.ai/settings/credits",
                "code": 402,
            },
            ("invalid_request_error", "provider_error"),
        ),
        (
            400,
            {
                "message": "You've reached the monthly spend limit of $120.00 for this account.",
                "type": "invalid_request_error",
            },
            ("invalid_request_error", "provider_error"),
        ),
        (
            400,
            {
                "message": "This key is associated with a deactivated account.",
                "type": "invalid_request_error",
                "code": "account_deactivated",
            },
            ("invalid_request_error", "provider_error"),
        ),
        (
            400,
            {
                "message": "Insufficient Balance",
                "type": "unknown_error",
                "code": "invalid_request_error",
            },
            ("invalid_request_error", "provider_error"),
        ),
    ],
    ids=[
        "quota",
        "provider key",
        "organization",
        "project",
        "credit left",
        "spend limit",
        "deactivated",
        "balance",
    ],
)
async def test_an_error_about_the_account_keeps_its_status_but_not_its_words_type_or_code(
    tmp_path: Path,
    status: int,
    error: dict[str, Any],
    kept: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only a known type and code are relayed (an account's state, `insufficient_quota`, is
    not); a message only for an error about the request, and only without account detail."""
    fake = FakeUpstream(FakeSettings(fail_status=status, fail_error=error))
    caplog.set_level(logging.INFO)
    async with (
        local_stack(shapes_policy(tmp_path), fake=fake) as stack,
        aiohttp.ClientSession() as session,
    ):
        url = stack.url + "/v1/chat/completions"
        async with session.post(url, json=chat(max_tokens=5), headers=HEADERS) as r:
            assert r.status == status
            text = await r.text()
        row = await line(stack.ledger, "alpha", "tenant")
    relayed = orjson.loads(text)["error"]
    assert (relayed["type"], relayed["code"]) == kept
    assert relayed["message"] != error["message"] and "provider" in relayed["message"]
    assert relayed["param"] is None
    for word in ACCOUNT_STATE_WORDS:
        assert word not in text, text
    assert error["message"][:40] in caplog.text
    assert (row.spent, row.reserved) == (0, 0)


async def test_a_param_naming_the_account_is_left_out(tmp_path: Path) -> None:
    error = {
        "message": "Invalid value for 'temperature'.",
        "type": "invalid_request_error",
        "param": "org-abc123",
        "code": "invalid_value",
    }
    fake = FakeUpstream(FakeSettings(fail_status=400, fail_error=error))
    async with (
        local_stack(shapes_policy(tmp_path), fake=fake) as stack,
        aiohttp.ClientSession() as session,
    ):
        url = stack.url + "/v1/chat/completions"
        async with session.post(url, json=chat(max_tokens=5), headers=HEADERS) as r:
            assert r.status == 400
            relayed = (await r.json())["error"]
    assert relayed == {**error, "param": None}


ACCOUNT_STATE_WORDS = (
    "billing",
    "sk-fake",
    "org-abc123",
    "proj_AbC123",
    "api-keys",
    "quota",
    "afford",
    "1234",
    "spend limit",
    "$120",
    "deactivated",
    "Balance",
    "credits",
)


@pytest.mark.parametrize("status", [401, 402, 403, 429, 500, 503])
async def test_past_a_request_error_the_message_is_always_the_proxys_own(
    tmp_path: Path, status: int
) -> None:
    """401, 402, 403, 429 and 5xx say something about the account or the provider, whatever
    their words: the tenant reads the class of problem in the proxy's words."""
    error = {"message": "Please slow down.", "type": "invalid_request_error", "code": None}
    fake = FakeUpstream(FakeSettings(fail_status=status, fail_error=error))
    async with (
        local_stack(shapes_policy(tmp_path), fake=fake) as stack,
        aiohttp.ClientSession() as session,
    ):
        url = stack.url + "/v1/chat/completions"
        async with session.post(url, json=chat(max_tokens=5), headers=HEADERS) as r:
            assert r.status == status
            relayed = (await r.json())["error"]
        row = await line(stack.ledger, "alpha", "tenant")
    assert "slow down" not in relayed["message"]
    assert "provider" in relayed["message"] and str(status) in relayed["message"]
    assert (row.spent, row.reserved) == (0, 0)


async def test_anthropics_spend_cap_is_not_relayed_to_the_tenant(tmp_path: Path) -> None:
    """Anthropic answers a reached spend cap 400 invalid_request_error: the tenant gets the
    400 and its type through the anthropic SDK, not the cap or when it lifts."""
    cap = {
        "type": "invalid_request_error",
        "message": "You have reached your specified API usage limits. You will regain access "
        "on 2025-11-01 at 00:00 UTC.",
    }
    error, row = await anthropic_refusal(tmp_path, 400, cap, anthropic.BadRequestError)
    text = error.response.text
    assert "usage limits" not in text and "regain access" not in text and "2025" not in text
    body = error.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    assert (row.spent, row.reserved) == (0, 0)


async def test_an_error_page_that_is_not_json_becomes_a_json_error(tmp_path: Path) -> None:
    """A load balancer's HTML page, or any body that is not the API's error, is not relayed:
    the tenant gets the status and a JSON error saying the provider answered it."""
    page = "<html><body>Bad gateway (edge 10.2.3.4, org-abc123)</body></html>"
    fake = FakeUpstream(FakeSettings(fail_status=502, fail_error=page))
    async with (
        local_stack(shapes_policy(tmp_path), fake=fake) as stack,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(
            stack.url + "/v1/chat/completions", json=chat(max_tokens=5), headers=HEADERS
        ) as r:
            assert r.status == 502
            assert r.content_type == "application/json"
            error = (await r.json())["error"]
        row = await line(stack.ledger, "alpha", "tenant")
    assert "10.2.3.4" not in error["message"] and "502" in error["message"]
    assert (row.spent, row.reserved) == (0, 0)
