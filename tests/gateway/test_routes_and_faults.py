"""Routes outside the budget path, the ledger being down, and timeouts on both sides."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiohttp
import pytest
from conftest import free_port
from multidict import CIMultiDictProxy
from support import chat, chat_prompt_tokens, cost, line, mini_cost, mini_reserved, policy
from yarl import URL

from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.policy.upstreams import Route
from proxy.testing.fake_settings import PROVIDER_HEADERS, RELAYED_HEADERS
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import local_stack

TENANT = {"X-Cycles-Tenant": "alpha"}


def with_timeouts(pol: Policy, **seconds: float) -> Policy:
    return dataclasses.replace(pol, timeouts=dataclasses.replace(pol.timeouts, **seconds))


async def test_models_list_is_forwarded_with_the_provider_key(tmp_path: Path) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol) as stack, aiohttp.ClientSession(headers=TENANT) as session:
        async with session.get(f"{stack.url}/v1/models") as r:
            assert r.status == 200
            assert [m["id"] for m in (await r.json())["data"]] == ["gpt-4o", "gpt-4o-mini"]
        path, headers, _ = stack.fake.requests[-1]
        assert path == "/v1/models"
        assert headers["Authorization"] == f"Bearer {stack.fake.settings.api_key}"


async def test_provider_account_headers_stay_behind_and_answer_headers_reach_the_client(
    tmp_path: Path,
) -> None:
    """OpenAI's organisation, project and rate-limit headers describe the account every tenant
    shares: no answer relays them (whole, streamed, the model list, an error), while the headers
    about the answer itself do; the request id is the call's own."""
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    request = {**TENANT, "X-Request-Id": "call-1"}
    seen: list[tuple[int, CIMultiDictProxy[str]]] = []
    async with local_stack(pol) as stack, aiohttp.ClientSession(headers=request) as session:
        url = f"{stack.url}/v1/chat/completions"
        for body in (chat(max_tokens=10), chat(max_tokens=10, stream=True)):
            async with session.post(url, json=body) as r:
                await r.read()
                seen.append((r.status, r.headers))
        async with session.get(f"{stack.url}/v1/models") as r:
            seen.append((r.status, r.headers))
        stack.fake.settings.fail_status = 429  # OpenAI's rate-limit answer, headers and all
        async with session.post(url, json=chat(max_tokens=10)) as r:
            seen.append((r.status, r.headers))
        row = await line(stack.ledger, "alpha", "tenant")
    assert [status for status, _ in seen] == [200, 200, 200, 429]
    for _, headers in seen:
        names = {name.lower() for name in headers}
        assert names.isdisjoint(PROVIDER_HEADERS), names & PROVIDER_HEADERS.keys()
        assert not [name for name in names if name.startswith("x-ratelimit-")]
        assert {name: headers.get(name) for name in RELAYED_HEADERS} == RELAYED_HEADERS
        assert headers.getall("X-Request-Id") == ["call-1"]
    # Two calls charged; the refused one released.
    assert (row.spent, row.reserved) == (2 * mini_cost(chat_prompt_tokens(chat()), 10), 0)


async def test_passthrough_paths_are_forwarded_only_when_listed(tmp_path: Path) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    upstreams = {
        name: dataclasses.replace(upstream, passthrough=("/audio/speech",))
        for name, upstream in pol.upstreams.items()
    }
    pol = dataclasses.replace(pol, upstreams=upstreams)
    async with local_stack(pol) as stack, aiohttp.ClientSession(headers=TENANT) as session:
        async with session.post(f"{stack.url}/v1/audio/speech", json={"input": "hi"}) as r:
            assert r.status == 200
            assert (await r.json()) == {"path": "/v1/audio/speech", "method": "POST"}
        async with session.post(f"{stack.url}/v1/audio/transcriptions", json={}) as r:
            assert r.status == 404
        assert [p for p, _, _ in stack.fake.requests] == ["/v1/audio/speech"]
        assert await stack.ledger.balances("alpha") == []


@pytest.mark.parametrize(
    "sent",
    [
        "/v1/models/x%3Fy=1",
        "/v1/models/%3F",
        "/v1/models/x%23frag",
        "/v1/models/a%20b",
        "/v1/models/caf%C3%A9",
        "/v1/models/50%25",
        "/v1/models?after=a%23b%26limit%3D1",
        "/v1/models/..%3B",
        "/v1/models/x%3Bjsessionid=1",
    ],
)
async def test_a_path_parameter_reaches_the_upstream_as_the_client_quoted_it(
    tmp_path: Path, sent: str
) -> None:
    """Issue 14, item 7: `x%3Fy=1` reached the upstream as `x?y=1` (a query), `%3F` as nothing:
    what the client quoted stays quoted on the way up, in the path and in the query."""
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        async with session.get(URL(stack.url + sent, encoded=True), headers=TENANT) as r:
            assert r.status == 200, await r.text()
        assert stack.fake.raw_paths == [sent]
        assert await stack.ledger.balances("alpha") == []


@pytest.mark.parametrize(
    ("sent", "named"),
    [
        ("/v1/models/x%00y", "U+0000"),
        ("/v1/models/x%0D%0AX-Injected:%201", "U+000D"),
        ("/v1/models/x%7F", "U+007F"),
        ("/v1/models/gpt%E2%80%AE4o", "U+202E"),
        ("/v1/models/gpt%E2%81%A6", "U+2066"),
        ("/v1/models/x%E2%80%A8", "U+2028"),
        ("/v1/models/x%FF", "UTF-8"),
    ],
)
async def test_control_bidi_and_broken_characters_in_a_path_are_400_and_go_nowhere(
    tmp_path: Path, sent: str, named: str
) -> None:
    """A NUL, a line break, a bidirectional override or bytes that are not UTF-8 are never part
    of an id: refused before routing, saying which character, and nothing goes up."""
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        async with session.get(URL(stack.url + sent, encoded=True), headers=TENANT) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert error["code"] == "invalid_path" and named in error["message"], error
        assert stack.fake.raw_paths == []
        assert await stack.ledger.balances("alpha") == []


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
async def test_ledger_unreachable_follows_fail_mode(tmp_path: Path, fail_mode: str) -> None:
    pol = dataclasses.replace(
        policy(tmp_path, "tenant: {limit: 50, period: month}"), fail_mode=fail_mode
    )
    dead_store = f"redis://127.0.0.1:{free_port()}/0"
    async with (
        local_stack(pol, store=dead_store) as stack,
        aiohttp.ClientSession() as session,
        session.post(f"{stack.url}/v1/chat/completions", json=chat(), headers=TENANT) as r,
    ):
        if fail_mode == "closed":
            assert r.status == 503
            assert r.headers["Retry-After"] == "2"
            assert (await r.json())["error"]["code"] == "ledger_unavailable"
            assert stack.fake.requests == []
        else:
            assert r.status == 200
            assert len(stack.fake.requests) == 1


async def test_slow_request_body_is_408_and_reserves_nothing(tmp_path: Path) -> None:
    pol = with_timeouts(policy(tmp_path, "tenant: {limit: 50, period: month}"), read_request=0.3)
    async with local_stack(pol) as stack:
        host, port = stack.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Cycles-Tenant: alpha\r\n"
            b'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"model"'
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        answer = head + await reader.readexactly(length)
        writer.close()
        await writer.wait_closed()
        assert answer.startswith(b"HTTP/1.1 408")
        assert b"did not arrive within 0.3 s" in answer
        assert stack.fake.requests == []
        assert await stack.ledger.balances("alpha") == []


async def test_stalled_stream_is_cut_and_charged_at_least_the_reservation(
    tmp_path: Path, store_url: str
) -> None:
    """An upstream that stops sending mid-stream hits the per-chunk idle timeout. It produced
    output the provider may bill, and sent no usage: the charge is at least the reservation."""
    fake = FakeUpstream(FakeSettings(chunks=4, chunk_delay=1.0))
    pol = with_timeouts(policy(tmp_path, "tenant: {limit: 50, period: month}"), chunk_idle=0.3)
    body = chat(max_tokens=40, stream=True)
    async with local_stack(pol, store=store_url, fake=fake) as stack:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{stack.url}/v1/chat/completions", json=body, headers=TENANT) as r,
        ):
            assert r.status == 200
            raw = await r.read()
        assert raw.count(b"data: ") == 1  # one chunk arrived before the stall
        row = await line(stack.ledger, "alpha", "tenant")
        assert (row.spent, row.reserved) == (mini_reserved(chat_prompt_tokens(body), 40), 0)


async def test_total_stream_time_is_bounded(tmp_path: Path) -> None:
    fake = FakeUpstream(FakeSettings(chunks=20, chunk_delay=0.1))
    pol = with_timeouts(policy(tmp_path, "tenant: {limit: 50, period: month}"), stream_total=0.5)
    async with local_stack(pol, fake=fake) as stack, aiohttp.ClientSession() as session:
        started = asyncio.get_running_loop().time()
        async with session.post(
            f"{stack.url}/v1/chat/completions",
            json=chat(max_tokens=20, stream=True),
            headers=TENANT,
        ) as r:
            raw = await r.read()
        elapsed = asyncio.get_running_loop().time() - started
        assert b"[DONE]" not in raw
        assert elapsed < 1.5
        row = await line(stack.ledger, "alpha", "tenant")
        assert row.reserved == 0 and row.spent > 0


async def test_a_route_s_own_answer_timeout_applies_to_its_models_only(tmp_path: Path) -> None:
    """gpt-4o is routed with a 0.2 s non_stream_answer: the slow upstream misses it (504,
    charged, since the provider bills the generation it finishes anyway) while gpt-4o-mini, on
    the policy's default timeouts, is served."""
    fake = FakeUpstream(FakeSettings(latency=0.5))
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    impatient = dataclasses.replace(pol.timeouts, non_stream_answer=0.2)
    routes = (Route("gpt-4o", "openai", impatient), Route("*", "openai"))
    pol = dataclasses.replace(pol, routes=routes)
    async with local_stack(pol, fake=fake) as stack, aiohttp.ClientSession() as session:
        url = f"{stack.url}/v1/chat/completions"
        async with session.post(url, json=chat(model="gpt-4o"), headers=TENANT) as r:
            assert r.status == 504
            message = (await r.json())["error"]["message"]
            assert "did not answer within 0.2 s (timeouts.non_stream_answer)" in message
        for _ in range(500):
            if fake.billed:
                break
            await asyncio.sleep(0.01)
        [billed] = fake.billed
        row = await line(stack.ledger, "alpha", "tenant")
        assert row.reserved == 0
        assert row.spent >= cost("gpt-4o", billed.prompt_tokens, billed.completion_tokens)
        async with session.post(url, json=chat(), headers=TENANT) as r:
            assert r.status == 200
            assert (await r.json())["model"] == "gpt-4o-mini"
        row = await line(stack.ledger, "alpha", "tenant")
        assert row.reserved == 0 and len(fake.billed) == 2


async def test_an_upstreams_own_timeouts_apply_to_its_unbudgeted_calls(tmp_path: Path) -> None:
    """`upstreams.<name>.timeouts` bounds model lists and passthrough calls: a 0.2 s first_byte
    against a 0.5 s upstream is a 502 naming the limit, while the policy's default serves."""
    fake = FakeUpstream(FakeSettings(latency=0.5))
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    impatient = dataclasses.replace(pol.timeouts, first_byte=0.2)
    patient = dict(pol.upstreams)
    impatient_upstreams = {
        name: dataclasses.replace(upstream, timeouts=impatient)
        for name, upstream in pol.upstreams.items()
    }
    async with aiohttp.ClientSession() as session:
        for upstreams, status in ((impatient_upstreams, 502), (patient, 200)):
            pol = dataclasses.replace(pol, upstreams=upstreams)
            async with (
                local_stack(pol, fake=fake) as stack,
                session.get(f"{stack.url}/v1/models", headers=TENANT) as r,
            ):
                assert r.status == status
                if status == 502:
                    message = (await r.json())["error"]["message"]
                    assert "did not answer within 0.2 s" in message


def test_upstream_timeouts_are_read_from_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    text = path.read_text().replace(
        "api_key_env: OPENAI_API_KEY}", "api_key_env: OPENAI_API_KEY, timeouts: {first_byte: 7}}"
    )
    path.write_text(text)
    loaded = load_policy(path)
    assert loaded.upstreams["openai"].timeouts == dataclasses.replace(pol.timeouts, first_byte=7)
    assert pol.upstreams["openai"].timeouts is None


def with_answer_limit(pol: Policy, limit: int) -> Policy:
    return dataclasses.replace(pol, limits=dataclasses.replace(pol.limits, max_answer_bytes=limit))


async def test_a_whole_answer_larger_than_max_answer_bytes_is_502_and_charged(
    tmp_path: Path, store_url: str
) -> None:
    """A whole answer was read into memory however large. Beyond limits.max_answer_bytes the
    call is 502, and, having reached the provider, charged its reservation (never less than
    the provider billed); a smaller one is served as usual."""
    pol = with_answer_limit(policy(tmp_path, "tenant: {limit: 50, period: month}"), 2000)
    fake = FakeUpstream(FakeSettings(completion_fraction=1.0))
    async with local_stack(pol, store=store_url, fake=fake) as stack:
        async with aiohttp.ClientSession(headers=TENANT) as session:
            async with session.post(
                f"{stack.url}/v1/chat/completions", json=chat(max_tokens=5)
            ) as r:
                assert r.status == 200, await r.text()
            small = await line(stack.ledger, "alpha", "tenant")
            async with session.post(
                f"{stack.url}/v1/chat/completions", json=chat(max_tokens=1000)
            ) as r:
                assert r.status == 502
                error = (await r.json())["error"]
        row = await line(stack.ledger, "alpha", "tenant")
    assert "limits.max_answer_bytes" in error["message"] and "charged" in error["message"]
    assert row.reserved == 0
    assert row.spent - small.spent >= mini_cost(chat_prompt_tokens(chat()), 1000)
    assert len(fake.billed) == 2


async def test_a_passthrough_answer_larger_than_max_answer_bytes_is_502(tmp_path: Path) -> None:
    pol = with_answer_limit(policy(tmp_path, "tenant: {limit: 50, period: month}"), 20)
    async with local_stack(pol) as stack, aiohttp.ClientSession(headers=TENANT) as session:
        async with session.get(f"{stack.url}/v1/models") as r:
            assert r.status == 502
            error = (await r.json())["error"]
        assert await stack.ledger.balances("alpha") == []
    assert "limits.max_answer_bytes" in error["message"]
