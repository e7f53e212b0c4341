"""Failed authentications in gateway mode: a valid key is never refused because of other
clients' failures alone, while a client that keeps sending bad keys is still slowed down, by
address (the TCP peer, or the address a trusted proxy forwarded for; an IPv6 one by its /64)
and by key prefix, and once braked costs the key store one lookup a second at most."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import chat, chat_prompt_tokens, eventually, line, mini_cost, policy

from proxy.core.errors import PolicyError
from proxy.core.peers import client_address, counted_as, parse_networks
from proxy.gateway.context import API_KEYS
from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.store.api_keys import Brake, Failures, KeyRecord, digest
from proxy.store.api_keys.failures import LOOKUP_INTERVAL_S
from proxy.testing.local import Stack, local_stack

BUDGET = "tenant: {limit: 50, period: month}"
LIMIT = 20
"""Failed authentications a minute an address (or a key prefix) may make before 429."""


def gateway(tmp_path: Path, extra: str = "") -> Policy:
    """The test policy in gateway mode, with `extra` top-level YAML (trusted_proxies, ...)."""
    policy(tmp_path, BUDGET)
    path = tmp_path / "policy.yaml"
    path.write_text(path.read_text().replace("identity: header", f"identity: api_key\n{extra}"))
    return load_policy(path)


@asynccontextmanager
async def proxy(pol: Policy, store_url: str) -> AsyncIterator[Stack]:
    async with local_stack(pol, store=store_url, sweep_every=None) as stack:
        yield stack


async def post(stack: Stack, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(stack.url + "/v1/chat/completions", json=chat(), headers=headers) as answer,
    ):
        return answer.status, dict(answer.headers), await answer.json()


def bearer(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def bad_key(i: int) -> str:
    """An unknown key, each with a prefix of its own."""
    return f"ck-{i:06d}" + "x" * 26


def failing(i: int) -> dict[str, str]:
    """The i-th of a mix of failing credentials: none, not ours, malformed, an unknown key."""
    return BAD_CREDENTIALS[i % 4] if i % 4 < 3 else bearer(bad_key(i))


def count_lookups(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The key digests the key store is asked for from now on, in order."""
    store = stack.app[API_KEYS].store
    asked: list[str] = []
    real = store.lookup

    async def lookup(sha: str) -> KeyRecord | None:
        asked.append(sha)
        return await real(sha)

    monkeypatch.setattr(store, "lookup", lookup)
    return asked


BAD_CREDENTIALS: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer sk-not-one-of-ours"},
    {"Authorization": "Bearer ck-tooshort"},
]


async def test_two_hundred_failures_from_an_address_never_refuse_a_valid_key_from_it(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acceptance 3 of issue 14: behind a NAT or an ingress every tenant shares an address, so
    an anonymous client's failures must not lock the others out. Past the limit its burst of
    guesses costs the store at most one lookup a second; the valid key that follows is looked
    up, and served."""
    async with proxy(gateway(tmp_path), store_url) as stack:
        good, _ = await stack.app[API_KEYS].create("alpha")
        looked_up = count_lookups(stack, monkeypatch)
        statuses = [(await post(stack, failing(i)))[0] for i in range(LIMIT)]
        assert statuses == [401] * LIMIT
        started = time.monotonic()
        burst = await asyncio.gather(*(post(stack, failing(i)) for i in range(LIMIT, 200)))
        elapsed = time.monotonic() - started
        assert {status for status, _, _ in burst} == {429}
        guesses = LIMIT // 4  # the unknown keys among them; the rest need no lookup
        assert guesses < len(looked_up) <= guesses + 1 + int(elapsed / LOOKUP_INTERVAL_S)
        assert await stack.ledger.balances("alpha") == []
        status, headers, body = await post(stack, bearer(good))
        assert status == 200, body
        assert headers["X-Cycles-Decision"] == "ALLOW"
        assert looked_up[-1] == digest(good)
        row = await line(stack.ledger, "alpha", "tenant")
        assert (row.spent, row.reserved) == (mini_cost(chat_prompt_tokens(chat()), 100), 0)
        assert stack.fake.calls == 1


async def test_a_braked_address_learns_nothing_beyond_its_pace(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a braked address's one lookup is out (its failure held for the interval), any other
    key the cache does not hold is 429 at once and never looked up, valid or not: 429 against
    200 tells the guesser nothing more. A key in use (in the cache) is still served, and the
    valid key is served once the slot is free."""
    async with proxy(gateway(tmp_path), store_url) as stack:
        keys = stack.app[API_KEYS]
        keys.failures = Brake(lookup_interval_s=3.0)  # room for the steps below on a slow box
        in_use, _ = await keys.create("alpha")
        fresh, _ = await keys.create("alpha")
        assert (await post(stack, bearer(in_use)))[0] == 200
        for i in range(LIMIT):
            assert (await post(stack, bearer(bad_key(i))))[0] == 401
        looked_up = count_lookups(stack, monkeypatch)
        held = asyncio.ensure_future(post(stack, bearer(bad_key(LIMIT))))
        await eventually(lambda: looked_up, "the braked address's one lookup")
        status, _, body = await post(stack, bearer(fresh))
        assert status == 429 and body["error"]["code"] == "too_many_failed_auth"
        assert (await post(stack, bearer(in_use)))[0] == 200
        assert not held.done() and looked_up == [digest(bad_key(LIMIT))]
        assert (await held)[0] == 429
        assert (await post(stack, bearer(fresh)))[0] == 200
        assert looked_up == [digest(bad_key(LIMIT)), digest(fresh)]
        row = await line(stack.ledger, "alpha", "tenant")
        assert row.spent == 3 * mini_cost(chat_prompt_tokens(chat()), 100)


def test_a_braked_address_gets_one_lookup_at_a_time_each_holding_its_slot() -> None:
    now = [1000.0]
    brake = Brake(clock=lambda: now[0], lookup_interval_s=1.0)
    assert brake.take_lookup("192.0.2.1") == 0.0  # not braked: no slot, nothing held
    for _ in range(LIMIT):
        brake.failed("192.0.2.1", None)
    assert brake.take_lookup("192.0.2.1") == 1001.0
    assert brake.take_lookup("192.0.2.1") is None
    assert brake.take_lookup("192.0.2.2") == 0.0  # another address is not braked
    now[0] += 0.5
    assert brake.take_lookup("192.0.2.1") is None
    assert brake.refused("192.0.2.1", None) == 1
    now[0] += 0.5
    assert brake.take_lookup("192.0.2.1") == 1002.0


async def test_a_brute_force_from_one_address_is_still_limited(
    tmp_path: Path, store_url: str
) -> None:
    """Past 20 failures a minute the address gets 429 with Retry-After; a forwarded-for header
    from a peer nobody trusts (the default) changes nothing, so it cannot dodge the limit."""
    async with proxy(gateway(tmp_path), store_url) as stack:

        def guess(i: int) -> dict[str, str]:
            return bearer(bad_key(i), **{"X-Forwarded-For": f"198.51.100.{i}"})

        answers = [await post(stack, guess(i)) for i in range(LIMIT)]
        answers += await asyncio.gather(*(post(stack, guess(i)) for i in range(LIMIT, LIMIT + 5)))
        assert [a[0] for a in answers] == [401] * LIMIT + [429] * 5
        for _, headers, body in answers[LIMIT:]:
            assert body["error"]["code"] == "too_many_failed_auth"
            assert 0 < int(headers["Retry-After"]) <= 60
        assert stack.fake.calls == 0
        assert await stack.ledger.balances("alpha") == []


async def test_behind_a_trusted_proxy_each_forwarded_client_is_limited_alone(
    tmp_path: Path,
) -> None:
    """With the ingress's address in trusted_proxies, the client it forwarded for is the one
    limited: another client behind the same ingress still gets 401, and an address the client
    wrote itself in front of the chain is not believed."""
    pol = gateway(tmp_path, 'trusted_proxies: ["127.0.0.0/8"]')
    async with proxy(pol, "memory://") as stack:
        for i in range(LIMIT):
            forwarded = {"X-Forwarded-For": f"203.0.113.{i}, 198.51.100.7"}
            assert (await post(stack, bearer(bad_key(i), **forwarded)))[0] == 401
        status, _, body = await post(
            stack, bearer(bad_key(99), **{"X-Forwarded-For": "198.51.100.7"})
        )
        assert status == 429 and body["error"]["code"] == "too_many_failed_auth"
        other = {"X-Forwarded-For": "198.51.100.8"}
        assert (await post(stack, bearer(bad_key(100), **other)))[0] == 401


async def test_the_forwarded_header_is_read_when_the_policy_names_it(tmp_path: Path) -> None:
    pol = gateway(tmp_path, 'trusted_proxies: ["127.0.0.1/32"]\nforwarded_header: forwarded')
    async with proxy(pol, "memory://") as stack:
        client = {"Forwarded": 'for="[2001:db8::7]:4711";proto=https'}
        for i in range(LIMIT):
            assert (await post(stack, bearer(bad_key(i), **client)))[0] == 401
        assert (await post(stack, bearer(bad_key(50), **client)))[0] == 429
        # X-Forwarded-For is not the header this ingress writes: a client's own is ignored.
        other = {"Forwarded": "for=198.51.100.8", "X-Forwarded-For": "2001:db8::7"}
        assert (await post(stack, bearer(bad_key(51), **other)))[0] == 401


async def test_one_key_failing_from_many_addresses_is_limited_by_its_prefix(
    tmp_path: Path, store_url: str
) -> None:
    """A revoked (or leaked and guessed-at) key retried from many addresses: its prefix is
    limited too, while other keys are not."""
    pol = gateway(tmp_path, 'trusted_proxies: ["127.0.0.0/8"]')
    async with proxy(pol, store_url) as stack:
        keys = stack.app[API_KEYS]
        revoked, record = await keys.create("alpha")
        await keys.revoke("alpha", record.key_id)
        for i in range(LIMIT):
            forwarded = {"X-Forwarded-For": f"198.51.100.{i}"}
            assert (await post(stack, bearer(revoked, **forwarded)))[0] == 401
        status, _, body = await post(stack, bearer(revoked, **{"X-Forwarded-For": "192.0.2.1"}))
        assert status == 429 and body["error"]["code"] == "too_many_failed_auth"
        good, _ = await keys.create("alpha")
        assert (await post(stack, bearer(good, **{"X-Forwarded-For": "192.0.2.1"})))[0] == 200
        assert (await post(stack, bearer(bad_key(7), **{"X-Forwarded-For": "192.0.2.2"})))[0] == 401


@pytest.mark.parametrize(("setting", "next_64"), [("", 401), ("client_ipv6_prefix: 56", 429)])
async def test_an_ipv6_client_is_counted_by_its_network(
    tmp_path: Path, setting: str, next_64: int
) -> None:
    """A host routinely owns a whole /64, so a client that takes a new address for every guess
    is still one client: its failures count together, by /64 unless the policy says otherwise,
    while an address outside that network is another client."""
    pol = gateway(tmp_path, f'trusted_proxies: ["127.0.0.0/8"]\n{setting}')
    async with proxy(pol, "memory://") as stack:

        def from_(address: str, i: int) -> dict[str, str]:
            return bearer(bad_key(i), **{"X-Forwarded-For": address})

        for i in range(LIMIT):
            assert (await post(stack, from_(f"2001:db8:1:2::{i + 1:x}", i)))[0] == 401
        assert (await post(stack, from_("2001:db8:1:2:ffff:ffff:ffff:ffff", 50)))[0] == 429
        assert (await post(stack, from_("2001:db8:1:3::1", 51)))[0] == next_64
        assert (await post(stack, from_("2001:db8:1:100::1", 52)))[0] == 401


@pytest.mark.parametrize(
    ("address", "prefix", "counted"),
    [
        ("198.51.100.7", 64, "198.51.100.7"),
        ("2001:db8::7", 64, "2001:db8::/64"),
        ("2001:db8:0:0:abcd::7", 64, "2001:db8::/64"),
        ("2001:db8:1:2::7", 48, "2001:db8:1::/48"),
        ("2001:db8::7", 128, "2001:db8::7/128"),
        ("::ffff:198.51.100.7", 64, "198.51.100.7"),
        ("unknown", 64, "unknown"),
    ],
)
def test_failures_are_counted_by_ipv4_address_or_ipv6_network(
    address: str, prefix: int, counted: str
) -> None:
    assert counted_as(address, prefix) == counted


def test_an_ipv6_prefix_that_cannot_be_meant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="client_ipv6_prefix") as refused:
        gateway(tmp_path, "client_ipv6_prefix: 8")
    assert "greater than or equal to 16" in str(refused.value)


def test_the_failure_table_is_bounded_in_entries_and_in_times_per_entry() -> None:
    now = [1000.0]
    failures = Failures(limit=3, window_s=60, max_entries=2, clock=lambda: now[0])
    for _ in range(1000):
        failures.record("a")
    assert failures.blocked_for("a") == 60
    assert failures.held() == 3  # only the last `limit` times of an entry are kept
    failures.record("b")
    failures.record("c")  # the least recently failed entry ("a") goes
    assert len(failures) == 2 and failures.blocked_for("a") == 0
    now[0] += 61
    assert failures.blocked_for("b") == 0 and failures.blocked_for("c") == 0
    assert len(failures) == 0  # entries whose failures left the window are dropped


XFF = "x-forwarded-for"


@pytest.mark.parametrize(
    ("peer", "headers", "header", "expected"),
    [
        ("10.0.0.5", {"X-Forwarded-For": "198.51.100.1"}, XFF, "10.0.0.5"),  # untrusted peer
        ("127.0.0.1", {"X-Forwarded-For": "198.51.100.1"}, XFF, "198.51.100.1"),
        ("127.0.0.1", {"X-Forwarded-For": "6.6.6.6, 198.51.100.1"}, XFF, "198.51.100.1"),
        ("127.0.0.1", {"X-Forwarded-For": "198.51.100.1, 127.0.0.2"}, XFF, "198.51.100.1"),
        ("127.0.0.1", {"X-Forwarded-For": "198.51.100.1:443"}, XFF, "198.51.100.1"),
        ("127.0.0.1", {"X-Forwarded-For": "[2001:db8::2]:443"}, XFF, "2001:db8::2"),
        ("::ffff:127.0.0.1", {"X-Forwarded-For": "2001:db8::2"}, XFF, "2001:db8::2"),
        ("127.0.0.1", {"X-Forwarded-For": "garbage"}, XFF, "127.0.0.1"),
        ("127.0.0.1", {}, XFF, "127.0.0.1"),
        ("127.0.0.1", {"Forwarded": "for=198.51.100.1"}, XFF, "127.0.0.1"),
        ("127.0.0.1", {"Forwarded": "for=198.51.100.1:80"}, "forwarded", "198.51.100.1"),
        (
            "127.0.0.1",
            {"Forwarded": 'for=6.6.6.6, for="[2001:db8::1]:4711";by=x'},
            "forwarded",
            "2001:db8::1",
        ),
        ("127.0.0.1", {"Forwarded": "for=unknown"}, "forwarded", "127.0.0.1"),
        ("127.0.0.1", {"Forwarded": "for=_hidden"}, "forwarded", "127.0.0.1"),
    ],
)
def test_the_client_address_is_forwarded_only_by_trusted_peers(
    peer: str, headers: dict[str, str], header: str, expected: str
) -> None:
    trusted = parse_networks(["127.0.0.0/8"])
    assert client_address(peer, headers, trusted, header) == expected


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ('["10.0.0.1/8"]', "host bits"),
        ('["not-a-network"]', "not an IP network"),
        ('["0.0.0.0/0"]', "every address"),
        ('["::/0"]', "every address"),
    ],
)
def test_trusted_proxies_that_cannot_be_meant_are_refused(
    tmp_path: Path, value: str, complaint: str
) -> None:
    with pytest.raises(PolicyError, match=complaint) as refused:
        gateway(tmp_path, f"trusted_proxies: {value}")
    assert "trusted_proxies" in str(refused.value)
