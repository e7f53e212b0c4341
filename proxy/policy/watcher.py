"""Policy hot reload: poll a content hash of the policy's files; swap in a change that checks clean.

Polling rather than inotify, because Kubernetes updates a mounted ConfigMap by writing a new
directory and swapping the `..data` symlink to it: no event fires on the paths the proxy reads,
but their content (followed through the symlinks) changes. An invalid change is logged at ERROR
with the loader's `file:line: field: what` and the last good policy stays in force; the same
broken content is reported once, not every round.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from proxy.core.errors import PolicyError
from proxy.policy import load_policy
from proxy.policy.advice import warnings
from proxy.policy.loader import policy_files, with_upstream_override
from proxy.policy.runtime import Policy

log = logging.getLogger(__name__)

RELOAD_INTERVAL = 2.0


@dataclass(frozen=True, slots=True)
class Reload:
    """Where the running policy came from, so it can be read again."""

    path: str
    every: float = RELOAD_INTERVAL
    """Seconds between polls."""
    upstream: str | None = None
    """`--upstream`, re-applied to every reloaded policy."""


def fingerprint(path: str | Path) -> str:
    """A hash of the names and contents of the files that make up the policy at `path`.

    Raises PolicyError when the path holds no policy files (e.g. a directory emptied)."""
    digest = hashlib.sha256()
    for file in policy_files(Path(path)):
        try:
            content = file.read_bytes()
        except OSError as exc:
            raise PolicyError(f"{file}: cannot be read ({exc.strerror})") from None
        digest.update(file.name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()


class PolicyWatcher:
    """Reads the policy again whenever its fingerprint changes; hands a valid one to `apply`,
    which may still refuse it with PolicyError (what it needs from the environment is missing):
    the policy in force then stays.

    `current` is the policy in force, checked against a reloaded one for settings that only a
    restart can change."""

    def __init__(
        self, reload: Reload, current: Policy, apply: Callable[[Policy], Awaitable[None]]
    ) -> None:
        self._reload = reload
        self._current = current
        self._apply = apply
        self._seen: str | None = None
        self._seen = self._fingerprint() or self._seen

    async def run(self) -> None:
        """Poll forever (cancel to stop)."""
        while True:
            await asyncio.sleep(self._reload.every)
            try:
                await self.poll()
            except Exception:  # a fault in one round must not end every later reload
                log.exception("policy reload failed; the last good policy stays in force")

    async def poll(self) -> None:
        """One round: reload when the files changed since the last round."""
        seen = self._fingerprint()
        if seen is None or seen == self._seen:
            return
        self._seen = seen
        try:
            policy = with_upstream_override(load_policy(self._reload.path), self._reload.upstream)
            _check_compatible(self._current, policy)
            await self._apply(policy)
        except PolicyError as exc:
            log.error("policy NOT reloaded, keeping the last good one:\n%s", exc)
            return
        self._current = policy
        log.info("policy reloaded from %s", self._reload.path)
        for text in warnings(policy):
            log.warning("%s", text)

    def _fingerprint(self) -> str | None:
        try:
            return fingerprint(self._reload.path)
        except PolicyError as exc:
            if self._seen != str(exc):
                log.error("policy NOT reloaded, keeping the last good one: %s", exc)
            self._seen = str(exc)
            return None


def _check_compatible(current: Policy, new: Policy) -> None:
    """Settings fixed for the life of the process (what listens, which tasks run)."""
    if new.identity != current.identity:
        raise PolicyError(
            f"identity: changed from {current.identity} to {new.identity}; the identity mode "
            "decides what the proxy listens on and trusts, so it changes only with a restart"
        )
