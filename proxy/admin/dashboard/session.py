"""Dashboard sessions: a cookie signed with a key derived from the admin token that logged in.

Why a signed cookie and not a session id kept in memory: the admin listener runs in every
replica (and in every `--workers` process), and a browser's next request may reach another one.
A session id held in one process would be unknown there, and a shared session secret would have
to be distributed. Every replica already holds the admin tokens, so each derives the same key
from the token itself, `HMAC-SHA256(token, "cycles-proxy dashboard session v1")`, and any replica
can check a cookie another one issued. The cookie says which access the token had, when it was
issued and when it expires, plus a random nonce, signed with the key of the token presented:

    v1.<admin|read>.<issued ms>.<expires ms>.<nonce>.<signature>        (base64url, no padding)

The token itself is never in the cookie. Verifying tries the key of every configured token of
that access (two while rotating), each compared in constant time. Removing a token from
CYCLES_ADMIN_TOKEN (or CYCLES_ADMIN_READ_TOKEN) therefore ends every session it opened, on every
replica. What a stateless cookie cannot do is end one session early on the server: logging out
deletes it from the browser, and a copied cookie stays valid until it expires (SESSION_SECONDS).
HttpOnly keeps page scripts from reading it and SameSite=Strict keeps other sites from sending
it; state-changing requests (login, logout) must also come from the dashboard's own origin
(`origin_problem`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from proxy.admin.auth import Access, Tokens

COOKIE = "cycles_dashboard"
PATH = "/dashboard"
SESSION_SECONDS = 8 * 3600
_LABEL = b"cycles-proxy dashboard session v1"
_ACCESS: tuple[Access, ...] = ("admin", "read")
_SKEW_MS = 60_000
"""A cookie issued up to this far in the future still counts (replicas' clocks differ)."""


def derive(token: str) -> bytes:
    """The signing key of sessions opened with `token`."""
    return hmac.new(token.encode(), _LABEL, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Session:
    access: Access
    expires_ms: int


class Sessions:
    """Issues and checks session cookies for the configured tokens."""

    def __init__(
        self,
        tokens: Tokens,
        *,
        lifetime_s: int = SESSION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = tokens
        self._keys: dict[Access, tuple[bytes, ...]] = {
            "admin": tuple(derive(t) for t in tokens.admin),
            "read": tuple(derive(t) for t in tokens.read),
        }
        self.lifetime_s = lifetime_s
        self._clock = clock

    def issue(self, token: str) -> str | None:
        """A cookie value for `token`, or None when it is not an admin or read token."""
        access = self._tokens.access(token) if token else None
        if access is None:
            return None
        now = int(self._clock() * 1000)
        payload = (
            f"v1.{access}.{now}.{now + self.lifetime_s * 1000}.{_b64(secrets.token_bytes(16))}"
        )
        return f"{payload}.{_b64(_sign(derive(token), payload))}"

    def verify(self, cookie: str) -> Session | None:
        """The session the cookie stands for; None when it is forged, foreign or expired."""
        parts = cookie.split(".")
        if len(parts) != 6 or parts[0] != "v1" or parts[1] not in _ACCESS:
            return None
        if not all(p.isascii() and p.isdigit() for p in parts[2:4]):
            return None
        signature = _unb64(parts[5])
        if signature is None:
            return None
        access: Access = "admin" if parts[1] == "admin" else "read"
        payload = ".".join(parts[:5])
        matches = [hmac.compare_digest(_sign(k, payload), signature) for k in self._keys[access]]
        now = int(self._clock() * 1000)
        issued, expires = int(parts[2]), int(parts[3])
        if not any(matches) or expires <= now or issued > now + _SKEW_MS:
            return None
        return Session(access, expires)


def _sign(key: bytes, payload: str) -> bytes:
    return hmac.new(key, payload.encode(), hashlib.sha256).digest()


def set_cookie(
    response: web.StreamResponse, request: web.Request, value: str, max_age: int
) -> None:
    """HttpOnly, SameSite=Strict, scoped to the dashboard; Secure when the request came over
    TLS (on plain http, e.g. through `kubectl port-forward`, a browser would drop it)."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path=PATH,
        httponly=True,
        samesite="Strict",
        secure=request.secure or None,
    )


def clear_cookie(response: web.StreamResponse, request: web.Request) -> None:
    set_cookie(response, request, "", 0)


def origin_problem(request: web.Request) -> str | None:
    """Why a state-changing request may not come from a page of this listener; None if it did.

    `Origin` must be this listener's own origin. A browser sends `Origin: null` instead for a
    form posted from a page served with `Referrer-Policy: no-referrer` (the Fetch standard
    serialises the origin as null then), which the dashboard's pages are; a sandboxed frame of
    any other site sends null too. `Sec-Fetch-Site`, which no page can set, tells the two apart:
    only `same-origin` is accepted with a null or missing Origin. Browsers send it to https and
    loopback addresses only, so over plain http the dashboard works through a port-forward."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null":
        if origin.lower() == f"{request.scheme}://{request.host}".lower():
            return None
        return "This form must be sent from the dashboard's own pages (cross-origin request)."
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site == "same-origin":
        return None
    if fetch_site is None:
        return (
            "The browser did not say where this form came from: open the dashboard over https, "
            "or over http on a loopback address (e.g. through kubectl port-forward)."
        )
    return "This form must be sent from the dashboard's own pages (cross-origin request)."


class LoginThrottle:
    """At most `limit` failed logins a minute per client address (in this process), so a
    token cannot be guessed through the form faster than through the API."""

    def __init__(self, limit: int = 10, addresses: int = 10_000) -> None:
        self._limit = limit
        self._addresses = addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def blocked(self, address: str, now: float) -> bool:
        recent = self._failures.get(address)
        while recent and recent[0] <= now - 60:
            recent.popleft()
        return recent is not None and len(recent) >= self._limit

    def failed(self, address: str, now: float) -> None:
        self._failures.setdefault(address, deque()).append(now)
        self._failures.move_to_end(address)
        while len(self._failures) > self._addresses:
            self._failures.popitem(last=False)
