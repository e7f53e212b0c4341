"""The Redis stores' error table: what redis-py and the wire raise, and what each becomes.

Declared once here, and by each Redis store class as its `boundary` (store/boundary.py), which
applies it to every public method. Most specific first:

    the wire's error reply (ReplyError)          LedgerError (AmountOutOfRange for a script's
                                                 OUT_OF_RANGE refusal)
    never sent (wire.NotSent, wire.ConnectTimeout) LedgerUnavailable, maybe_ran=False
    cannot be reached now (UNAVAILABLE)          LedgerUnavailable: the caller applies fail_mode
    anything else redis-py raises (ERRORS)       LedgerError: the store refused the command

The replay store declares a table of its own (REPLAYS): any Redis error there is
LedgerUnavailable, so a client's retry is forwarded or refused by `fail_mode` rather than failed.
"""

from __future__ import annotations

from redis import exceptions as rex

from proxy.core.errors import LedgerError, LedgerUnavailable, range_error
from proxy.store.boundary import Boundary
from proxy.store.redis.wire import ConnectTimeout, NotSent, ReplyError

UNAVAILABLE: tuple[type[BaseException], ...] = (
    rex.ConnectionError,
    rex.TimeoutError,
    rex.ReadOnlyError,
    rex.ClusterError,  # CLUSTERDOWN, MASTERDOWN, redirections exhausted
    rex.TryAgainError,  # a slot in migration
    rex.RedisClusterException,  # no node reachable, slots not covered
    OSError,
)
"""redis-py's errors that mean the store cannot be reached now (the caller applies fail_mode)."""
ERRORS: tuple[type[BaseException], ...] = (rex.RedisError, rex.RedisClusterException)
"""Every error redis-py raises (RedisClusterException is not a RedisError)."""
NOT_SENT: tuple[type[BaseException], ...] = (NotSent, ConnectTimeout)
"""The wire never wrote the command: it cannot have run."""
OUT_OF_RANGE = "OUT_OF_RANGE "
"""How a script refuses a sum out of the safe range (store/ledger/lua/common.lua guard)."""


def refusal(text: str, store: str = "the Redis ledger") -> LedgerError:
    """A command `store` refused: a script's `OUT_OF_RANGE <tenant> <field> …` is
    AmountOutOfRange, anything else LedgerError."""
    if text.startswith(OUT_OF_RANGE):
        _, tenant, field, *_ = text.split(" ")
        return range_error(tenant, field)
    return LedgerError(f"{store} refused a command: {text}")


def _refused(store: str, exc: BaseException) -> Exception:
    return refusal(str(exc), store)


def _unreachable(store: str, exc: BaseException) -> Exception:
    return LedgerUnavailable(f"{store} is unreachable: {exc}", maybe_ran=False)


def _unavailable(store: str, exc: BaseException) -> Exception:
    return LedgerUnavailable(f"{store} is unreachable: {exc}")


def _replays_unavailable(store: str, exc: BaseException) -> Exception:
    return LedgerUnavailable(f"{store}: {exc}")


REDIS = Boundary(
    (
        ((ReplyError,), _refused),
        (NOT_SENT, _unreachable),
        (UNAVAILABLE, _unavailable),
        (ERRORS, _refused),
    )
)
"""Every Redis store's table (the replay store's is REPLAYS)."""
REPLAYS = Boundary(((UNAVAILABLE + ERRORS, _replays_unavailable),))
"""The replay store's: whatever Redis says, the idempotency store is unavailable."""
