"""A small typed client for the proxy's budgets for actions (the reservation API), on aiohttp.

    from proxy.client import BudgetDenied, Cycles

    async with Cycles("http://127.0.0.1:8080", tenant="acme", agent="support-bot") as cycles:
        try:
            async with cycles.reserve(action="send_email") as held:
                await send_the_email()          # the block succeeds: the reservation commits
                held.actual = 30                # optional: commit another amount
        except BudgetDenied as denied:          # 402 before the block ran: nothing was done
            print("no budget left:", denied.remaining)
        print((await cycles.balances()).remaining)   # {"RISK_POINTS": 450, ...}

An exception inside the block releases the reservation and propagates. The scope (and, in
gateway mode, the API key) is given once, at construction, and sent with every request.
`reserve`, `commit`, `release` and `balances` are also there to call directly. Apart from
aiohttp, this module depends on nothing else in the package, so an app can copy it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

SCOPE_HEADERS = {
    "tenant": "X-Cycles-Tenant",
    "workspace": "X-Cycles-Workspace",
    "app": "X-Cycles-App",
    "workflow": "X-Cycles-Workflow",
    "agent": "X-Cycles-Agent",
    "toolset": "X-Cycles-Toolset",
    "run": "X-Cycles-Run",
    "user": "X-Cycles-User",
}


class CyclesAPIError(Exception):
    """The proxy refused a request: `status` and the error body's `type`, `code`, `message`."""

    def __init__(self, status: int, type: str, code: str | None, message: str) -> None:
        super().__init__(f"{status} {type}: {message}")
        self.status, self.type, self.code, self.message = status, type, code, message


class BudgetDenied(CyclesAPIError):
    """402: a budget on the scope path cannot cover the reservation; nothing was reserved."""

    def __init__(self, status: int, type: str, code: str | None, message: str, remaining: str):
        super().__init__(status, type, code, message)
        self.remaining = remaining
        """What is left on the denying budget, e.g. `30 RISK_POINTS`."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """A reservation just made (201)."""

    id: str
    status: str
    """ALLOW (in shadow mode too; see `shadow_decision`)."""
    unit: str
    amount: int
    expires_at_ms: int
    """Settle before this (by the proxy's clock); after it the sweeper charges or releases it."""
    remaining: int | None
    """Left on the tightest budget after this reservation, in `unit`."""
    action: str | None = None
    shadow_decision: str | None = None
    """In shadow mode, what enforcement would have done (`DENY budget agent`)."""


@dataclass(frozen=True, slots=True)
class Settled:
    """A reservation as the store keeps it, after a commit or release (or a GET)."""

    id: str
    status: str
    """OPEN, COMMITTED, RELEASED, EXPIRED_CHARGED or EXPIRED_RELEASED."""
    unit: str
    reserved: int
    amount: int
    """What was committed, or the reserved amount while nothing was."""
    committed: int | None
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class Line:
    """One budget line of the caller's scope path, in its current period."""

    level: str
    value: str
    unit: str
    period: str
    limit: int
    spent: int
    reserved: int
    credit: int
    remaining: int
    text: str
    """`remaining` as the proxy renders it: `480 RISK_POINTS`, `49.992700 USD`."""


@dataclass(frozen=True, slots=True)
class Balances:
    tenant: str
    scope: str
    remaining: dict[str, int]
    """Per unit, the least remaining on the scope path: what the caller can still reserve."""
    text: dict[str, str]
    """The same, rendered (`480 RISK_POINTS`)."""
    lines: list[Line] = field(default_factory=list)


class Cycles:
    """The reservation API of one cycles-proxy, for one scope.

    `base_url` is the proxy's address (`http://127.0.0.1:8080`; a trailing `/v1` is accepted).
    Pass `session` to share an aiohttp session (it is then not closed here)."""

    def __init__(
        self,
        base_url: str,
        *,
        tenant: str | None = None,
        workspace: str | None = None,
        app: str | None = None,
        workflow: str | None = None,
        agent: str | None = None,
        toolset: str | None = None,
        run: str | None = None,
        user: str | None = None,
        api_key: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        given = {
            "tenant": tenant,
            "workspace": workspace,
            "app": app,
            "workflow": workflow,
            "agent": agent,
            "toolset": toolset,
            "run": run,
            "user": user,
        }
        self.headers = {SCOPE_HEADERS[k]: v for k, v in given.items() if v is not None}
        if api_key is not None:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._session, self._owned = session, session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __aenter__(self) -> Cycles:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owned and self._session is not None:
            await self._session.close()
            self._session = None

    def reserve(
        self,
        action: str | None = None,
        *,
        unit: str | None = None,
        amount: int | None = None,
        idempotency_key: str | None = None,
        ttl_s: int | None = None,
    ) -> Reserving:
        """`async with cycles.reserve(action="send_email") as held:` reserves on entry (raising
        BudgetDenied on 402), commits when the block succeeds (`held.actual`, default the
        reserved amount) and releases when it raises."""
        body: dict[str, Any] = {"action": action, "unit": unit, "amount": amount}
        body |= {"idempotency_key": idempotency_key, "ttl": ttl_s}
        return Reserving(self, {k: v for k, v in body.items() if v is not None})

    async def create(self, body: dict[str, Any]) -> Reservation:
        """POST /v1/cycles/reservations with this body, as it is."""
        data = await self._call("POST", "/v1/cycles/reservations", body)
        return Reservation(
            data["id"],
            data["status"],
            data["unit"],
            data["amount"],
            data["expires_at_ms"],
            data.get("remaining"),
            data.get("action"),
            data.get("shadow_decision"),
        )

    async def commit(self, reservation_id: str, amount: int | None = None) -> Settled:
        body = {} if amount is None else {"amount": amount}
        return _settled(await self._call("POST", f"{_path(reservation_id)}/commit", body))

    async def release(self, reservation_id: str) -> Settled:
        return _settled(await self._call("POST", f"{_path(reservation_id)}/release", {}))

    async def get(self, reservation_id: str) -> Settled:
        return _settled(await self._call("GET", _path(reservation_id), None))

    async def balances(self) -> Balances:
        data = await self._call("GET", "/v1/cycles/balances", None)
        return Balances(
            data["tenant"],
            data["scope"],
            {unit: r["units"] for unit, r in data["remaining"].items()},
            {unit: r["text"] for unit, r in data["remaining"].items()},
            [Line(**line) for line in data["lines"]],
        )

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = self.base_url + path
        async with self._session.request(
            method, url, json=body, headers=self.headers, timeout=self._timeout
        ) as response:
            raw = await response.read()
            remaining = response.headers.get("X-Cycles-Remaining")
        try:
            data = json.loads(raw)
        except ValueError:
            data = raw.decode(errors="replace")
        if response.status >= 400:
            raise _error(response.status, data, remaining)
        if not isinstance(data, dict):
            raise CyclesAPIError(response.status, "invalid_response", None, str(data)[:200])
        return data


class Reserving:
    """One reservation's lifetime as a context manager (Cycles.reserve)."""

    def __init__(self, cycles: Cycles, body: dict[str, Any]) -> None:
        self._cycles, self._body = cycles, body
        self.reservation: Reservation | None = None
        self.actual: int | None = None
        """Set inside the block to commit this amount instead of the reserved one."""
        self.settled: Settled | None = None

    @property
    def id(self) -> str:
        assert self.reservation is not None, "not reserved yet: use `async with`"
        return self.reservation.id

    async def __aenter__(self) -> Reserving:
        self.reservation = await self._cycles.create(self._body)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.settled = await self._cycles.commit(self.id, self.actual)
            return
        try:
            self.settled = await self._cycles.release(self.id)
        except (CyclesAPIError, aiohttp.ClientError, TimeoutError) as failure:
            # The block's own exception matters more; the sweeper resolves the reservation.
            log.warning("could not release reservation %s: %s", self.id, failure)


def _path(reservation_id: str) -> str:
    return f"/v1/cycles/reservations/{reservation_id}"


def _settled(data: dict[str, Any]) -> Settled:
    return Settled(
        data["id"],
        data["status"],
        data["unit"],
        data["reserved"],
        data["amount"],
        data.get("committed"),
        data["expires_at_ms"],
    )


def _error(status: int, data: Any, remaining: str | None) -> CyclesAPIError:
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return CyclesAPIError(status, "http_error", None, str(data)[:200])
    kind, code = str(error.get("type")), error.get("code")
    message = str(error.get("message"))
    if status == 402:
        return BudgetDenied(status, kind, code, message, remaining or "")
    return CyclesAPIError(status, kind, code, message)
