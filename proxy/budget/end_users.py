"""The end user a call is for, and the form its id is kept in. No I/O.

An end user is the `user` scope level (END_USER), keyed by (tenant, user id) as the run is by
(tenant, run id): a plan's `budgets.user` applies to each end user of the tenant, reserved in the
same atomic step as every other level. Where the id comes from, the first that applies:

    the caller's API key pins a user     the key's; X-Cycles-User and the body must agree (403)
    X-Cycles-User                        the header, under the scope header rules; the body is
                                         then not read
    the body                             OpenAI endpoints: `user`, else `safety_identifier`;
                                         Anthropic's /v1/messages: `metadata.user_id`

The body goes upstream unchanged whatever is kept. With `user_ids: plain` (the default) an id is
kept as sent, lowercased, and must be a scope value (1 to 128 of A-Z a-z 0-9 _ . -). With
`user_ids: hash` any id of 1 to 256 characters is accepted and only
HMAC-SHA256(secret, "<tenant>\\n<id lowercased>") is kept, its first 32 hex digits (128 bits),
in the ledger, the audit trail and the logs alike. Keyed, because a bare SHA-256 of a guessable
id (an email, an account number) is undone by hashing the candidates: without the secret, which
lives only in the proxy's environment, nobody who reads the store can. The tenant is mixed in, so
one person known to two tenants gets unrelated ids. Changing the secret changes every kept id
(each end user starts afresh).

A body id that cannot be kept (not a scope value under `plain`, not a string) is a 400 when the
tenant's plan keeps anything per end user or the key pins one; otherwise the call is simply not
attributed to an end user, so clients that always sent `user` keep working.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from proxy.budget.scopes import Scope
from proxy.core.errors import BadRequest, Forbidden, PolicyError
from proxy.core.types import END_USER, SCOPE_VALUE
from proxy.policy.runtime import Plan, Policy

HEADER = "X-Cycles-User"
MAX_HASHED_CHARS = 256
"""The longest id `user_ids: hash` accepts (OpenAI's `user` and `safety_identifier` are shorter)."""
HASH_DIGITS = 32
MIN_SECRET_CHARS = 16
FINGERPRINT = b"cycles-proxy: the secret of user_ids: hash"
PLAIN = "plain"
"""The fingerprint of `user_ids: plain` (a hashing one is hex digits, never this)."""


@dataclass(frozen=True, slots=True)
class UserIds:
    """How end-user ids are kept: as sent, or keyed-hashed with `secret`."""

    hashed: bool = False
    secret: bytes = field(default=b"", repr=False)

    def kept(self, tenant: str, raw: object, where: str) -> str:
        """The id as kept for `raw` as sent in `where` (a header or a body field); 400 when it
        cannot be one."""
        if self.hashed:
            if not isinstance(raw, str) or not 1 <= len(raw) <= MAX_HASHED_CHARS:
                raise _invalid(where, f"a string of 1 to {MAX_HASHED_CHARS} characters")
            message = f"{tenant}\n{raw.lower()}".encode()
            return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:HASH_DIGITS]
        if not isinstance(raw, str) or not SCOPE_VALUE.fullmatch(raw):
            raise _invalid(
                where,
                "1 to 128 characters from A-Z, a-z, 0-9, '_', '.' and '-', not '-' alone (this "
                "proxy keeps end-user ids as sent; the operator can set `user_ids: hash` to "
                "accept any id and keep only its keyed hash)",
            )
        return raw.lower()

    def fingerprint(self) -> str:
        """What the store records (store/redis/safety.py check_user_ids) so that replicas keeping
        ids differently cannot share it: `plain` when ids are kept as sent, under `hash` an HMAC
        of a constant with the secret (hex: it tells secrets apart and reveals none)."""
        if not self.hashed:
            return PLAIN
        return hmac.new(self.secret, FINGERPRINT, hashlib.sha256).hexdigest()[:HASH_DIGITS]

    def in_scope(self, scope: Scope) -> Scope:
        """The scope with the user it names (from X-Cycles-User or the key's pin) as kept."""
        if END_USER not in scope.values or not self.hashed:
            return scope
        values = {**scope.values, END_USER: self.kept(scope.tenant, scope.values[END_USER], HEADER)}
        pins = dict(scope.pins)
        if END_USER in pins:
            pins[END_USER] = values[END_USER]
        return replace(scope, values=values, pins=pins)


def from_environment(policy: Policy, environ: Mapping[str, str]) -> UserIds:
    """The policy's `user_ids`, with the secret read from `environ`; PolicyError when hashing is
    asked for without a usable secret (the proxy must not start, or reload into it)."""
    if policy.user_ids == "plain":
        return UserIds()
    name = policy.user_id_secret_env
    secret = environ.get(name, "")
    if len(secret) < MIN_SECRET_CHARS:
        raise PolicyError(
            f"user_ids: hash needs the environment variable {name} set to a secret of at least "
            f"{MIN_SECRET_CHARS} characters (e.g. `openssl rand -hex 32`), the same on every "
            "replica; it is not set" + (" long enough" if secret else "")
        )
    return UserIds(hashed=True, secret=secret.encode())


def check_reload(current: UserIds, new: UserIds) -> None:
    """PolicyError unless a reloaded policy keeps ids as the one in force does: switching
    `user_ids` between plain and hash, or the secret, would give every end user a second id
    (and budget) beside the first, so either takes a restart (the store then checks the secret
    against every replica's)."""
    if new.hashed != current.hashed:
        raise PolicyError(
            f"user_ids: changed from {_mode(current)} to {_mode(new)}; end users would get new "
            "ids (and budgets) beside their old ones, so it changes only with a restart"
        )
    if new.fingerprint() != current.fingerprint():
        raise PolicyError(
            "user_ids: hash: the secret changed; every end user would get a second id (and "
            "budget), so it changes only with a restart of every replica"
        )


def _mode(ids: UserIds) -> str:
    return "hash" if ids.hashed else "plain"


def for_call(
    scope: Scope, body: Mapping[str, Any], endpoint: str, ids: UserIds, plan: Plan
) -> Scope:
    """The call's scope with its end user (the module's table), as kept."""
    found = _in_body(body, endpoint)
    pinned = scope.pins.get(END_USER)
    if found is None or (END_USER in scope.values and pinned is None):
        return scope
    where, raw = found
    if pinned is None and not plan.limits_level(END_USER):
        try:
            kept = ids.kept(scope.tenant, raw, where)
        except BadRequest:
            return scope  # nothing is kept per end user: the call is not attributed
    else:
        kept = ids.kept(scope.tenant, raw, where)
    if pinned is not None and kept != pinned:
        raise Forbidden(
            f"'{where}' in the request body names another end user than the one this API key "
            "pins. Leave it out (the key decides) or send the key's user.",
            type="scope_mismatch",
        )
    return replace(scope, values={**scope.values, END_USER: kept})


def _in_body(body: Mapping[str, Any], endpoint: str) -> tuple[str, object] | None:
    """(field, value) of the end user the body names, if any."""
    if endpoint == "messages":
        metadata = body.get("metadata")
        raw = metadata.get("user_id") if isinstance(metadata, dict) else None
        return None if raw is None else ("metadata.user_id", raw)
    for name in ("user", "safety_identifier"):
        if body.get(name) is not None:
            return name, body[name]
    return None


def _invalid(where: str, rule: str) -> BadRequest:
    return BadRequest(
        f"The end user id in '{where}' must be {rule}.", code="invalid_user", param=where
    )
