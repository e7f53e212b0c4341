"""Every error cycles-proxy raises on purpose.

    CyclesError
    ├── PolicyError              a policy file is invalid (names file, line and field)
    ├── SettingsError            a flag or environment value that cannot work
    ├── CatalogueError           a price catalogue file that cannot be read as its format
    ├── LedgerError
    │   ├── LedgerUnavailable    the store cannot be reached (fail_mode decides)
    │   ├── LedgerEpochLost      the store was flushed or replaced: fail closed until restart
    │   ├── StoreUnsafe          --require-noeviction and the store may evict keys
    │   └── AmountOutOfRange     an amount would reach 2**52 units
    ├── UpstreamError            the provider could not be reached, did not answer in time, or
    │                            the connection broke (`delivered`: the provider may bill it)
    └── ClientError              an error answered to the client, OpenAI-shaped
        ├── BadRequest           400: malformed JSON, bad header value, wrong types
        ├── Unauthorized         401
        ├── Forbidden            403: unknown tenant, model not allowed, tenant suspended
        ├── NotFound             404: a path outside the allow-list
        ├── Conflict             409: a call with this idempotency key is still running
        ├── IdempotencyKeyReused 422: an idempotency key sent again with another request
        ├── BudgetExceeded       402: a budget on the scope path cannot cover the call
        ├── QuotaExceeded        429: a plan quota (runs, steps, concurrency, rate) is used up
        ├── TooManyFailedAuth    429: an address (or a key) keeps failing to authenticate
        ├── PayloadTooLarge      413
        ├── RequestTimeout       408
        ├── BadGateway           502/504: the provider failed before answering
        └── ServiceUnavailable   503: the ledger is unreachable and fail_mode is closed

Foreign exceptions (aiohttp, redis, yaml, pydantic) are caught where they enter and turned into
one of these; nothing deeper than the boundary sees them.
"""

from __future__ import annotations


class CyclesError(Exception):
    """Base of every deliberate error."""


class PolicyError(CyclesError):
    """A policy file is invalid. The message names the file, line and field at fault."""


class LedgerError(CyclesError):
    """The ledger could not do what was asked."""


class LedgerUnavailable(LedgerError):
    """The store cannot be reached; the caller applies `fail_mode`. `maybe_ran` is False only
    when the command surely never reached the store (no connection could be made): otherwise it
    may have run, or may still run, after the caller gave up."""

    def __init__(self, message: str, *, maybe_ran: bool = True) -> None:
        super().__init__(message)
        self.maybe_ran = maybe_ran


class LedgerEpochLost(LedgerError):
    """The store's epoch key vanished or changed (a flush, a failover to an empty replica): its
    budgets are not the ones this process started with, so every reservation is refused,
    whatever `fail_mode` says, until an operator restarts the proxy."""


class StoreUnsafe(LedgerError):
    """`--require-noeviction` and the store's `maxmemory-policy` is not `noeviction` (or could
    not be read)."""


class AmountOutOfRange(LedgerError):
    """An amount would reach 2**52 units, beyond what Lua's doubles hold exactly."""


class UpstreamError(CyclesError):
    """The provider could not be reached, did not answer in time, or the connection broke."""

    def __init__(self, message: str, *, delivered: bool, timeout: str | None = None) -> None:
        super().__init__(message)
        self.delivered = delivered
        """The connection was established, so the request may have reached the provider, which
        may bill it."""
        self.timeout = timeout
        """The timeout that fired (`first_byte`, `non_stream_answer`, ...), if one did."""


class ClientError(CyclesError):
    """Something the caller sent that we refuse. Rendered as an OpenAI-shaped error body."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.headers: dict[str, str] = {}

    close_connection = False
    """The request body was not read to its end, so the connection cannot be reused."""


class BadRequest(ClientError):
    status = 400


class Unauthorized(ClientError):
    status = 401
    type = "authentication_error"


class Forbidden(ClientError):
    status = 403
    type = "permission_error"

    def __init__(
        self, message: str, *, type: str = "permission_error", code: str | None = None
    ) -> None:
        super().__init__(message, code=code or type)
        self.type = type


class NotFound(ClientError):
    status = 404
    type = "not_found_error"


class Conflict(ClientError):
    status = 409
    type = "conflict"


class IdempotencyKeyReused(ClientError):
    status = 422
    type = "idempotency_key_reused"


class BudgetExceeded(ClientError):
    status = 402
    type = "budget_exceeded"

    def __init__(self, message: str, *, headers: dict[str, str]) -> None:
        super().__init__(message, code="budget_exceeded")
        self.headers = {"x-should-retry": "false", **headers}


class QuotaExceeded(ClientError):
    status = 429
    type = "quota_exceeded"

    def __init__(self, message: str, *, quota: str, headers: dict[str, str]) -> None:
        super().__init__(message, code=quota)
        self.headers = headers


class TooManyFailedAuth(ClientError):
    status = 429
    type = "rate_limit_error"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many failed authentications from this address or with this key; retry in "
            f"{retry_after} s with a valid API key.",
            code="too_many_failed_auth",
        )
        self.headers = {"Retry-After": str(retry_after)}


class PayloadTooLarge(ClientError):
    status = 413
    close_connection = True


class RequestTimeout(ClientError):
    status = 408
    close_connection = True


class BadGateway(ClientError):
    status = 502
    type = "upstream_error"

    def __init__(
        self, message: str, *, status: int = 502, code: str = "upstream_unavailable"
    ) -> None:
        super().__init__(message, code=code)
        self.status = status


class ServiceUnavailable(ClientError):
    status = 503
    type = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int, code: str = "ledger_unavailable") -> None:
        super().__init__(message, code=code)
        self.headers = {"Retry-After": str(retry_after)}


class SettingsError(CyclesError):
    """A flag or environment value that cannot work; the message says what to change."""


class CatalogueError(CyclesError):
    """A price catalogue (`cycles-proxy prices`) that cannot be read as the format named; the
    message names the file and what was expected."""


def range_error(tenant: str, field: str) -> AmountOutOfRange:
    """What refusing an operation that would take `field` out of the safe range raises."""
    return AmountOutOfRange(
        f"tenant {tenant!r}: {field} would leave the ledger's safe range (magnitude up to "
        "2**53 - 1 units); nothing was written"
    )
