"""Every bad input gets a clear 4xx, reaches nothing upstream, and leaves the ledger unchanged."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import aiohttp
import orjson
import pytest
from support import chat, policy

from proxy.gateway.logs import RedactingFilter, redact
from proxy.testing.local import Stack, local_stack

TENANT = {"X-Cycles-Tenant": "alpha"}


async def raw_request(
    stack: Stack, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, object]]:
    """Send bytes exactly as given: the path is not normalised by the client."""
    host, port = stack.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
    head += "Connection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    status = int(answer.split(b" ", 2)[1])
    return status, orjson.loads(answer.split(b"\r\n\r\n", 1)[1])


CASES = [
    # (name, path, body, headers, status, words in the message)
    ("malformed json", "/v1/chat/completions", b"{not json", TENANT, 400, "not valid JSON"),
    ("body not an object", "/v1/chat/completions", b"[1, 2]", TENANT, 400, "JSON object"),
    ("missing model", "/v1/chat/completions", b'{"messages": []}', TENANT, 400, "'model'"),
    (
        "model wrong type",
        "/v1/chat/completions",
        b'{"model": 4, "messages": []}',
        TENANT,
        400,
        "'model'",
    ),
    (
        "messages wrong type",
        "/v1/chat/completions",
        b'{"model": "gpt-4o-mini", "messages": "hi"}',
        TENANT,
        400,
        "messages",
    ),
    (
        "negative max_tokens",
        "/v1/chat/completions",
        b'{"model": "gpt-4o-mini", "messages": [], "max_tokens": -1}',
        TENANT,
        400,
        "max_tokens",
    ),
    (
        "unpriced model",
        "/v1/chat/completions",
        b'{"model": "mystery", "messages": []}',
        TENANT,
        400,
        "no price",
    ),
    (
        "missing tenant",
        "/v1/chat/completions",
        b'{"model": "gpt-4o-mini", "messages": []}',
        {},
        400,
        "X-Cycles-Tenant",
    ),
    (
        "bad tenant value",
        "/v1/chat/completions",
        b"{}",
        {"X-Cycles-Tenant": "a:b"},
        400,
        "X-Cycles-Tenant",
    ),
    (
        "bad run value",
        "/v1/chat/completions",
        b"{}",
        {**TENANT, "X-Cycles-Run": "r/1"},
        400,
        "X-Cycles-Run",
    ),
    (
        "unknown tenant",
        "/v1/chat/completions",
        b"{}",
        {"X-Cycles-Tenant": "nobody"},
        403,
        "Unknown tenant",
    ),
    ("files endpoint", "/v1/files", b"", TENANT, 404, "No such route"),
    ("batches endpoint", "/v1/batches", b"{}", TENANT, 404, "No such route"),
    ("dot segments", "/v1/../admin", b"", TENANT, 404, "dot segments"),
    ("encoded slash", "/v1/models/..%2f..", b"", TENANT, 404, "encoded slashes"),
    ("encoded dot segment", "/v1/models/%2e%2e/files", b"", TENANT, 404, "dot segments"),
    ("wrong method", "/v1/chat/completions/abc", b"", TENANT, 404, "No such route"),
]


@pytest.mark.parametrize(
    ("name", "path", "body", "headers", "status", "words"), CASES, ids=[c[0] for c in CASES]
)
async def test_bad_input_is_refused_and_changes_nothing(
    tmp_path: Path,
    name: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    words: str,
) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol) as stack:
        method = (
            "GET"
            if name in ("files endpoint", "dot segments", "encoded slash", "encoded dot segment")
            else "POST"
        )
        got, answer = await raw_request(
            stack, method, path, body, {"Content-Type": "application/json", **headers}
        )
        assert got == status
        error = answer["error"]
        assert isinstance(error, dict) and words in str(error["message"])
        assert set(error) == {"message", "type", "code", "param"}
        assert stack.fake.requests == []
        assert await stack.ledger.balances("alpha") == []


async def test_oversized_body_is_413(tmp_path: Path, store_url: str) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    pol = dataclasses.replace(pol, limits=dataclasses.replace(pol.limits, max_body_bytes=1000))
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as session:
        big = chat("x" * 5000)
        async with session.post(f"{stack.url}/v1/chat/completions", json=big, headers=TENANT) as r:
            assert r.status == 413
            assert "1000 bytes" in (await r.json())["error"]["message"]
        assert stack.fake.requests == []
        assert await stack.ledger.balances("alpha") == []


async def test_provider_key_replaces_client_credentials_and_never_reaches_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        key = stack.fake.settings.api_key
        headers = {
            **TENANT,
            "Authorization": "Bearer sk-client-secret-123456",
            "OpenAI-Organization": "org-x",
        }
        async with session.post(
            f"{stack.url}/v1/chat/completions", json=chat(), headers=headers
        ) as r:
            assert r.status == 200
            assert not any(h.lower().startswith("x-ratelimit") for h in r.headers)
        sent = stack.fake.requests[-1][1]
        assert sent["Authorization"] == f"Bearer {key}"
        assert "OpenAI-Organization" not in sent and "X-Cycles-Tenant" not in sent
        stack.fake.settings.fail_status = 401
        async with session.post(
            f"{stack.url}/v1/chat/completions", json=chat(), headers=headers
        ) as r:
            assert r.status == 401
            assert key not in await r.text()
    assert caplog.records, "expected the proxy to log its calls"
    assert key not in caplog.text
    assert "sk-client-secret" not in caplog.text


def test_redaction_filter_scrubs_keys_from_every_line() -> None:
    record = logging.LogRecord(
        "x",
        logging.ERROR,
        __file__,
        1,
        "upstream said %s with headers %s via %s",
        (
            "Incorrect API key sk-proj-abcdefghijklmnop",
            {"Authorization": "Bearer abc.def", "api-key": "zzz123"},
            "redis://user:hunter2@db:6379/0",
        ),
        None,
    )
    RedactingFilter().filter(record)
    text = record.getMessage()
    for secret in ("sk-proj-abcdefghijklmnop", "abc.def", "zzz123", "hunter2"):
        assert secret not in text
    assert redact("x-api-key: k-123") == "x-api-key: [REDACTED]"
