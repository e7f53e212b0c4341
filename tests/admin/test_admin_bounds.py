"""The admin listener's bounds on what a client sends, the proxy port's own: request headers
within `timeouts.read_request`, a body within `read_request` more (else 408) and at most
64 KiB (else 413), the dashboard's login form at most 4 KiB, read before its token can be
checked; a call whose token comes in a header is refused before its body is read (or, with
`Expect: 100-continue`, sent), and a request refused with its body unread has its connection
closed at once. A refused body changes nothing: no tenant, no session, no Idempotency-Key taken,
no failed login counted; concurrent logins get no guess past the throttle."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
import pytest
from admin_support import ADMIN, READER, Admin, admin_stack
from listen_support import Trickled, address, read_answer, send_at_once, trickle_body
from support import listening, policy, proxy_in_front_of

from proxy.admin.api import MAX_BODY_BYTES
from proxy.admin.dashboard import session
from proxy.admin.dashboard.routes import LOGIN_MAX_BYTES
from proxy.gateway.listen import ADMIN_LINGER_S
from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.testing.fake_upstream import FakeUpstream

READ_REQUEST = 2.0
"""timeouts.read_request in these tests' policy, in seconds."""
SLACK = 1.5
"""What a loaded machine may add to a deadline."""
TENANT = orjson.dumps({"id": "slow", "plan": "test"})


def policy_path(tmp_path: Path) -> Path:
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    path = tmp_path / "policy.yaml"
    path.write_text(path.read_text() + f"timeouts:\n  read_request: {READ_REQUEST}\n")
    return path


def short_deadline(tmp_path: Path) -> Policy:
    return load_policy(policy_path(tmp_path))


def head(url: str, path: str, *headers: str) -> bytes:
    """A POST's request line and headers to `url`'s `path`."""
    lines = [f"POST {path} HTTP/1.1", "Host: " + url.removeprefix("http://"), *headers]
    return "".join(line + "\r\n" for line in lines).encode()


def status_of(seen: Trickled) -> int:
    return int(seen.answer.split(b" ", 2)[1]) if seen.answer else 0


def json_of(answer: bytes) -> dict[str, object]:
    body = orjson.loads(answer.partition(b"\r\n\r\n")[2])
    assert isinstance(body, dict)
    return body


async def tenant_status(admin: Admin, tenant: str) -> int:
    async with admin.session.get(
        f"{admin.url}/admin/v1/tenants/{tenant}", headers={"Authorization": f"Bearer {ADMIN}"}
    ) as r:
        return r.status


async def test_a_body_trickled_past_read_request_is_408_and_changes_nothing(
    tmp_path: Path, store_url: str
) -> None:
    """A client that sends its headers, then a byte a second, held an admin handler (and, on
    the login form, the token check) for as long as it liked. Both are answered 408 once
    read_request has passed, closing the connection; nothing is created, no session issued, and
    the Idempotency-Key is not taken: the same call sent whole goes through."""
    async with admin_stack(short_deadline(tmp_path), store_url) as (_, admin):
        api, login = await asyncio.gather(
            trickle_body(
                admin.url,
                head(
                    admin.url,
                    "/admin/v1/tenants",
                    f"Authorization: Bearer {ADMIN}",
                    "Idempotency-Key: k-slow",
                    "Content-Type: application/json",
                ),
                TENANT,
                until_closed=False,
            ),
            trickle_body(
                admin.url,
                head(
                    admin.url,
                    "/dashboard/login",
                    f"Origin: {admin.url}",
                    "Content-Type: application/x-www-form-urlencoded",
                ),
                f"token={ADMIN}".encode(),
                until_closed=False,
            ),
        )
        for seen in (api, login):
            assert status_of(seen) == 408, seen
            assert seen.answered_after is not None
            assert READ_REQUEST - 0.5 <= seen.answered_after <= READ_REQUEST + SLACK, seen
            assert b"Connection: close" in seen.answer
        assert "did not arrive within" in str(json_of(api.answer))
        assert b"Set-Cookie" not in login.answer
        assert await tenant_status(admin, "slow") == 404
        whole = orjson.loads(TENANT)
        assert (await admin.call("POST", "/admin/v1/tenants", whole, key="k-slow"))[0] == 201


async def test_an_admin_body_over_its_cap_is_413_and_changes_nothing(
    tmp_path: Path, store_url: str
) -> None:
    """An admin call's body is at most 64 KiB: larger is 413, whether its Content-Length says
    so (refused before it is read) or it comes chunked; nothing is created."""
    big = {"id": "big", "plan": "test", "pad": "x" * MAX_BODY_BYTES}
    async with admin_stack(short_deadline(tmp_path), store_url) as (_, admin):
        declared = await admin.send("POST", "/admin/v1/tenants", orjson.dumps(big))

        async def chunks() -> object:
            yield orjson.dumps(big)

        chunked = await admin.send("POST", "/admin/v1/tenants", chunks())  # type: ignore[arg-type]
        for answer in (declared, chunked):
            assert answer.status == 413, answer
            assert orjson.loads(answer.body)["error"]["code"] == "body_too_large"
        assert await tenant_status(admin, "big") == 404
        small = {"id": "big", "plan": "test", "pad": "x" * (MAX_BODY_BYTES // 2)}
        assert (await admin.call("POST", "/admin/v1/tenants", small))[0] == 201


async def test_a_login_form_over_its_cap_is_413_and_counts_as_no_failed_login(
    tmp_path: Path,
) -> None:
    """The login form is read before its token is checked, so it is small: a form over 4 KiB is
    413, sets no cookie and counts as no failed login (twelve of them, past the ten a minute an
    address may fail, and the right token still logs in)."""
    form = {"token": ADMIN, "pad": "x" * LOGIN_MAX_BYTES}
    async with (
        admin_stack(short_deadline(tmp_path), "memory://") as (_, admin),
        aiohttp.ClientSession() as client,
    ):
        login = admin.url + "/dashboard/login"
        origin = {"Origin": admin.url}
        for _ in range(12):
            async with client.post(login, data=form, headers=origin, allow_redirects=False) as r:
                assert r.status == 413, await r.text()
                assert session.COOKIE not in r.cookies
        async with client.post(
            login, data={"token": ADMIN}, headers=origin, allow_redirects=False
        ) as r:
            assert r.status == 303 and session.COOKIE in r.cookies


@pytest.mark.timeout(90)
async def test_the_admin_listener_cuts_slow_headers_and_slow_bodies_and_refuses_before_reading(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On `cycles-proxy serve`'s admin listener: a connection trickling its headers is closed
    after read_request, unanswered; one trickling its body is answered 408 then and closed
    ADMIN_LINGER_S later; a call without a valid token, or a read token's POST, is refused at
    once, its body unread, and closed at once too; nothing is created."""
    monkeypatch.setenv("CYCLES_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("CYCLES_ADMIN_READ_TOKEN", READER)
    extra = ("--admin-listen", "127.0.0.1:0")
    async with proxy_in_front_of(FakeUpstream(), policy_path(tmp_path), redis_url, 0, *extra) as (
        _,
        process,
    ):
        url = listening(process)["admin"]
        assert url is not None
        tenants = "/admin/v1/tenants"
        json = "Content-Type: application/json"
        headers, body, anonymous, reader = await asyncio.gather(
            slow_headers(url),
            trickle_body(url, head(url, tenants, f"Authorization: Bearer {ADMIN}", json), TENANT),
            trickle_body(url, head(url, tenants, json), TENANT),
            trickle_body(url, head(url, tenants, f"Authorization: Bearer {READER}", json), TENANT),
        )
        async with aiohttp.ClientSession() as client:
            admin = Admin(url, client)
            assert await tenant_status(admin, "slow") == 404
    assert headers is not None and READ_REQUEST - 0.5 <= headers <= READ_REQUEST + SLACK
    assert status_of(body) == 408 and body.answered_after is not None
    assert READ_REQUEST - 0.5 <= body.answered_after <= READ_REQUEST + SLACK, body
    assert body.closed_after is not None
    assert body.closed_after <= READ_REQUEST + ADMIN_LINGER_S + SLACK, body
    for refused, status in ((anonymous, 401), (reader, 403)):
        assert status_of(refused) == status, refused
        assert refused.answered_after is not None and refused.answered_after < 0.5, refused
        assert refused.closed_after is not None and refused.closed_after < 1.0, refused


async def slow_headers(url: str) -> float | None:
    """Seconds until the server closes a connection that trickles header lines (never their
    end), or None if it answers instead."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    writer.write(b"POST /admin/v1/tenants HTTP/1.1\r\nHost: admin\r\n")
    answer = asyncio.ensure_future(read_answer(reader))
    try:
        for i in range(60):
            done, _ = await asyncio.wait([answer], timeout=0.5)
            if done:
                break
            writer.write(f"X-Slow-{i}: a\r\n".encode())
        if answer.done():
            answer.result()
        return None
    except (ConnectionError, asyncio.IncompleteReadError):
        return time.monotonic() - started
    finally:
        answer.cancel()
        writer.close()


BIG = 64 << 20
"""A body an admin listener that reads what it refused takes whole in well under a second,
and more than the sockets between it and its client buffer."""
JSON = "Content-Type: application/json"
FORM = "Content-Type: application/x-www-form-urlencoded"
SAME_ORIGIN = "Sec-Fetch-Site: same-origin"
BEARER, READ_BEARER = f"Authorization: Bearer {ADMIN}", f"Authorization: Bearer {READER}"
REFUSED_UNREAD = {
    "no-token": ("/admin/v1/tenants", (), 401),
    "read-token": ("/admin/v1/tenants", (READ_BEARER,), 403),
    "no-route": ("/admin/v1/no-such-route", (), 401),
    "login-cross-origin": ("/dashboard/login", ("Origin: http://elsewhere.example",), 403),
    "logout": ("/dashboard/logout", (SAME_ORIGIN,), 303),
}


def whole(url: str, path: str, headers: tuple[str, ...], body: bytes) -> bytes:
    """A POST of `body` to `url`'s `path`, head and body."""
    return head(url, path, *headers, f"Content-Length: {len(body)}") + b"\r\n" + body


@pytest.mark.parametrize("case", list(REFUSED_UNREAD))
async def test_a_body_sent_at_once_and_refused_unread_closes_the_connection_unread(
    tmp_path: Path, case: str
) -> None:
    """A request whose body the admin listener does not read (no valid token, a read token's
    change, no such route, a login form from another origin, a logout), sent whole at once
    (64 MiB): answered, and its connection closed at once. Not the body read and dropped (all
    of it, as aiohttp's lingering close does, at whatever rate it comes) and the connection
    kept for the next, as often as an unauthenticated client likes. Nothing is created; a call
    the token admits keeps its connection."""
    path, headers, status = REFUSED_UNREAD[case]
    async with admin_stack(short_deadline(tmp_path), "memory://") as (_, admin):
        request = whole(admin.url, path, (*headers, JSON), b"x" * BIG)
        seen = await send_at_once(admin.url, request)
        admitted = whole(admin.url, "/admin/v1/tenants", (BEARER, JSON), TENANT)
        kept = await send_at_once(admin.url, admitted, patience=1.0)
        assert await tenant_status(admin, "slow") == 200
    assert seen.answer.startswith(f"HTTP/1.1 {status} ".encode()), seen.answer[:300]
    assert seen.closed, "the connection was kept, its body read and dropped"
    assert seen.sent < len(request) // 4, f"the listener took {seen.sent >> 20} MiB it refused"
    assert kept.answer.startswith(b"HTTP/1.1 201 ") and not kept.closed, kept


LOGIN_FORM = f"token={ADMIN}".encode()
EXPECTED = {
    "no-token": ("/admin/v1/tenants", (JSON,), BIG, 401),
    "read-token": ("/admin/v1/tenants", (READ_BEARER, JSON), len(TENANT), 403),
    "no-route": ("/admin/v1/no-such-route", (JSON,), BIG, 401),
    "over-the-cap": ("/admin/v1/tenants", (BEARER, JSON), MAX_BODY_BYTES + 1, 413),
    "login-over-its-cap": ("/dashboard/login", (SAME_ORIGIN, FORM), LOGIN_MAX_BYTES + 1, 413),
    "admitted": ("/admin/v1/tenants", (BEARER, JSON), len(TENANT), 100),
    "login": ("/dashboard/login", (SAME_ORIGIN, FORM), len(LOGIN_FORM), 100),
}


@pytest.mark.parametrize("case", list(EXPECTED))
async def test_expect_100_continue_invites_only_a_body_that_will_be_read(
    tmp_path: Path, case: str
) -> None:
    """aiohttp answers `Expect: 100-continue` before any middleware runs, so it invited the body
    of a caller without a token. The admin listener answers `100 Continue` only to a call its
    token admits, with a Content-Length within the cap (64 KiB; the login form 4 KiB); else the
    refusal comes at once and the connection is closed, the body never sent."""
    path, headers, length, status = EXPECTED[case]
    async with admin_stack(short_deadline(tmp_path), "memory://") as (_, admin):
        reader, writer = await asyncio.open_connection(*address(admin.url))
        try:
            expect = ("Expect: 100-continue", f"Content-Length: {length}")
            writer.write(head(admin.url, path, *headers, *expect) + b"\r\n")
            first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if status == 100:
                writer.write(TENANT if path.startswith("/admin/") else LOGIN_FORM)
                then = await asyncio.wait_for(read_answer(reader), 5)
            else:
                then = await asyncio.wait_for(reader.read(), 5)  # to the close
        finally:
            writer.close()
        created = await tenant_status(admin, "slow")
    assert first.startswith(f"HTTP/1.1 {status} ".encode()), first
    if case == "admitted":
        assert then.startswith(b"HTTP/1.1 201 ") and created == 200
    elif case == "login":
        assert then.startswith(b"HTTP/1.1 303 ") and session.COOKIE.encode() in then
    else:
        assert b"connection: close" in first.lower() and created == 404


async def test_concurrent_logins_from_one_address_get_no_guess_past_its_limit(
    tmp_path: Path,
) -> None:
    """The login throttle (ten failed logins a minute per address) was checked before the form
    was read: 64 logins from one address, all waiting for their forms at once, each passed it
    and had its token checked, 64 guesses. It is checked again once the form is in: ten wrong
    tokens are checked (401), the other 54 are refused (429)."""
    wrong = b"token=not-the-token"
    async with admin_stack(short_deadline(tmp_path), "memory://") as (_, admin):
        connections = [await asyncio.open_connection(*address(admin.url)) for _ in range(64)]
        try:
            announced = head(
                admin.url, "/dashboard/login", SAME_ORIGIN, FORM, f"Content-Length: {len(wrong)}"
            )
            for _, writer in connections:
                writer.write(announced + b"\r\n")
            await asyncio.sleep(1.0)  # every login is waiting for its form
            for _, writer in connections:
                writer.write(wrong)
            answers = await asyncio.wait_for(
                asyncio.gather(*(read_answer(reader) for reader, _ in connections)), 10
            )
        finally:
            for _, writer in connections:
                writer.close()
    statuses = Counter(int(answer.split(b" ", 2)[1]) for answer in answers)
    assert statuses == {401: 10, 429: 54}, statuses
