"""What Anthropic bills for a block is what the proxy reserves for it, however deep the block sits
in a Messages body: a cache breakpoint on a text block inside a document's content, inside a
search result inside a tool result, or on the document of a web fetch result; a PDF inside a web
fetch result; images inside a document of content blocks. The fake provider finds each of them
with a walk of its own (proxy/testing/fake_claude_tokens.py) and bills it; a model whose policy
cannot price one refuses the call before anything is reserved."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prices_support import HEADERS, billed_cost, measured, prices_policy, tenant_row

from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

LATENCY = 0.15
MESSAGES = "/v1/messages"
PREFIX = "You review pull requests for a payments team; be strict about money. " * 120
"""About 1,700 tokens: a prefix worth caching."""
FIVE = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
PDF = {"type": "document", "source": {"type": "url", "url": "https://x.test/report.pdf"}}
IMAGE = {"type": "image", "source": {"type": "url", "url": "https://x.test/scan.png"}}
Turns = list[dict[str, Any]]


def in_content_document(control: dict[str, str]) -> Turns:
    text = {"type": "text", "text": PREFIX, "cache_control": control}
    document = {"type": "document", "source": {"type": "content", "content": [text]}}
    return [{"role": "user", "content": [document, {"type": "text", "text": "Review it."}]}]


def in_search_result(control: dict[str, str]) -> Turns:
    text = {"type": "text", "text": PREFIX, "cache_control": control}
    found = {"type": "search_result", "source": "https://x.test/rules", "title": "rules"}
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [{**found, "content": [text]}],
    }
    call = {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "rules"}}
    return [
        {"role": "user", "content": "Find the rules."},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]


def fetched(document: dict[str, Any]) -> Turns:
    """A web fetch (Anthropic's server tool) that brought `document` back."""
    url = "https://x.test/page"
    call = {
        "type": "server_tool_use",
        "id": "srvtoolu_1",
        "name": "web_fetch",
        "input": {"url": url},
    }
    result = {
        "type": "web_fetch_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": {"type": "web_fetch_result", "url": url, "content": document},
    }
    return [
        {"role": "user", "content": "Read the page."},
        {"role": "assistant", "content": [call, result]},
        {"role": "user", "content": "Summarise it."},
    ]


def in_fetched_document(control: dict[str, str]) -> Turns:
    source = {"type": "text", "media_type": "text/plain", "data": PREFIX}
    return fetched({"type": "document", "source": source, "cache_control": control})


PLACES: dict[str, tuple[Callable[[dict[str, str]], Turns], str]] = {
    "document-content": (in_content_document, "messages[0].content[0].source.content[0]"),
    "tool_result>search_result": (in_search_result, "messages[2].content[0].content[0].content[0]"),
    "web_fetch_result>document": (in_fetched_document, "messages[1].content[1].content.content"),
}
"""Where a breakpoint hides, and the path the proxy names it by."""


def claude(messages: Turns, model: str = "claude-haiku-4", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 20, "messages": messages, **extra}


@pytest.mark.parametrize("ttl", ["5m", "1h"])
@pytest.mark.parametrize("place", PLACES)
async def test_a_nested_breakpoint_is_reserved_at_its_write_price_and_charged_as_billed(
    tmp_path: Path, store_url: str, place: str, ttl: str
) -> None:
    build, _ = PLACES[place]
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        body = claude(build(HOUR if ttl == "1h" else FIVE))
        call = await measured(http, stack.url + MESSAGES, stack.ledger, body)
    assert call.status == 200, call.answer
    [billed] = fake.billed
    written = billed.cache_write_1h_tokens if ttl == "1h" else billed.cache_write_tokens
    assert written > 1000, billed
    assert billed_cost(billed) == call.charged <= call.reserved, (billed, call)


@pytest.mark.parametrize("place", PLACES)
async def test_a_nested_breakpoint_on_a_model_without_cache_write_is_refused_naming_it(
    tmp_path: Path, store_url: str, place: str
) -> None:
    build, path = PLACES[place]
    body = claude(build(FIVE), model="gpt-4o")  # priced without cache_write
    await _refused(tmp_path, store_url, body, f"'{path}.cache_control'", "cache_write")


async def test_a_pdf_in_a_web_fetch_result_is_refused_without_a_documents_price(
    tmp_path: Path, store_url: str
) -> None:
    body = claude(fetched(PDF))  # claude-haiku-4 prices no documents
    await _refused(
        tmp_path, store_url, body, "(messages[1].content[1].content.content)", "documents"
    )


async def test_a_pdf_in_a_web_fetch_result_reserves_the_model_s_document_tokens(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY, document_tokens=3000))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        body = claude(fetched(PDF), model="claude-sonnet-4")  # documents: 6,000 tokens each
        call = await measured(http, stack.url + MESSAGES, stack.ledger, body)
    assert call.status == 200, call.answer
    [billed] = fake.billed
    assert billed.documents == 1, billed
    assert billed_cost(billed) == call.charged <= call.reserved, (billed, call)


async def test_images_inside_a_document_of_content_blocks_are_reserved_as_images(
    tmp_path: Path, store_url: str
) -> None:
    """Claude bills an image by its pixels wherever it is (the fake, as Claude Opus 4.7: 4,784
    tokens for one it cannot measure), not by the few tokens of its URL."""
    document = {"type": "document", "source": {"type": "content", "content": [IMAGE] * 6}}
    said = [{"role": "user", "content": [document, {"type": "text", "text": "Describe them."}]}]
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with (
        local_stack(prices_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        body = claude(said, model="claude-opus-4-7")
        call = await measured(http, stack.url + MESSAGES, stack.ledger, body)
    assert call.status == 200, call.answer
    [billed] = fake.billed
    assert billed.prompt_tokens > 6 * 4_784, billed
    assert billed_cost(billed) == call.charged <= call.reserved, (billed, call)


async def _refused(
    tmp_path: Path, store_url: str, body: dict[str, Any], names: str, missing: str
) -> None:
    """`body` is answered 400 unpriced_feature naming `names` and the price `missing`, and
    nothing reached the ledger or the provider."""
    async with (
        local_stack(prices_policy(tmp_path), store=store_url) as stack,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(stack.url + MESSAGES, json=body, headers=HEADERS) as r:
            assert r.status == 400
            answer = await r.json()
        assert answer["error"]["code"] == "unpriced_feature", answer
        assert names in answer["error"]["message"], answer
        assert missing in answer["error"]["message"], answer
        assert stack.fake.calls == 0
        row = await tenant_row(stack.ledger)
        assert (row.spent, row.reserved) == (0, 0)
