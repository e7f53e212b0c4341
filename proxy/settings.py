"""Process settings from flags and the environment, validated once."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Literal

from proxy.core.errors import SettingsError
from proxy.gateway.listen import KEEP_ALIVE_S, MAX_CONNECTIONS, MAX_PER_PEER
from proxy.policy.runtime import Policy
from proxy.store.redis.clients import check_url


@dataclass(frozen=True, slots=True)
class Settings:
    policy: str
    host: str = "127.0.0.1"
    port: int = 8080
    store: str = "memory://"
    upstream: str | None = None
    log_level: str = "INFO"
    log_format: str | None = None
    """text or json; None: $CYCLES_LOG_FORMAT, else text."""
    workers: int = 1
    allow_header_identity_on_public_address: bool = False
    metrics_tokens: tuple[str, ...] = ()
    """$CYCLES_METRICS_TOKEN: what the metrics listener's /metrics asks for (gateway/scrape.py)."""
    allow_unauthenticated_metrics: bool = False
    """Let a gateway serve metrics on a non-loopback address without a token."""
    admin: tuple[str, int] | None = ("127.0.0.1", 8081)
    """The admin API's listener; None: no admin API in this process."""
    metrics: tuple[str, int] | None = None
    """A listener serving only /metrics (and /healthz), for Prometheus: a gateway never serves
    them on its proxy port, a sidecar's is loopback only. None: no such listener (/metrics is
    then on the admin listener, and in sidecar mode on the proxy port)."""
    max_connections: int = MAX_CONNECTIONS
    """Places each listener holds at most (gateway/listen.py): connections, and calls still running
    for closed ones."""
    max_connections_per_peer: int = MAX_PER_PEER
    """Connections one client address holds at most on each listener (gateway/listen.py)."""
    keep_alive: float = KEEP_ALIVE_S
    """Seconds an idle keep-alive connection stays open after its last answer."""
    reload_every: float = 2.0
    """Seconds between checks of the policy's files for a change; 0: never reload."""
    drain_timeout: float = 30.0
    """After SIGTERM, how long in-flight calls (and, in sidecar mode, new ones) are served."""
    require_noeviction: bool = False
    """Refuse to start on a Redis store whose maxmemory-policy may evict ledger keys."""
    sigterm: Literal["auto", "drain", "serve"] = "auto"
    """What SIGTERM does. drain: stop accepting, let in-flight calls finish (a gateway, or a
    native sidecar, which Kubernetes stops only after the app has exited). serve: keep serving
    until --drain-timeout, POST /quitquitquit or SIGINT (a classic sidecar container, stopped at
    the same moment as the app it serves). auto: serve with identity: header, else drain."""

    def serves_after_sigterm(self, policy: Policy) -> bool:
        if self.sigterm == "auto":
            return policy.identity == "header"
        return self.sigterm == "serve"


def parse_listen(value: str, flag: str = "--listen") -> tuple[str, int]:
    """HOST:PORT; port 0 binds any free port (the startup log line names the one bound)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise SettingsError(f"{flag} {value!r}: use HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "127.0.0.1", int(port)


def store_from(flag: str | None) -> str:
    return flag or os.environ.get("CYCLES_STORE") or "memory://"


def validate(settings: Settings, policy: Policy) -> None:
    """Refuse combinations that would silently break the budget guarantee."""
    if settings.reload_every < 0 or settings.drain_timeout < 0:
        raise SettingsError("--reload-every and --drain-timeout are seconds, 0 or more")
    if settings.max_connections < 1:
        raise SettingsError("--max-connections is a number of connections, 1 or more")
    if settings.max_connections_per_peer < 1:
        raise SettingsError("--max-connections-per-peer is a number of connections, 1 or more")
    if not settings.keep_alive > 0:
        raise SettingsError("--keep-alive-timeout is a number of seconds, more than 0")
    try:
        check_url(settings.store)
    except ValueError as exc:
        raise SettingsError(f"--store / CYCLES_STORE: {exc}") from None
    if settings.store.startswith("memory://") and settings.workers > 1:
        raise SettingsError(
            "The memory:// store lives in one process, so --workers > 1 would give every worker "
            "its own budgets. Use a redis:// store to run several workers."
        )
    if (
        policy.identity == "header"
        and not _loopback(settings.host)
        and not settings.allow_header_identity_on_public_address
    ):
        raise SettingsError(
            f"identity: header trusts X-Cycles-Tenant from whoever connects, so it only "
            f"listens on a loopback address (not {settings.host}). Use identity: api_key for "
            "a shared gateway, or pass --allow-header-identity-on-public-address if a "
            "network policy already restricts who can connect."
        )
    _check_metrics(settings, policy)


def _check_metrics(settings: Settings, policy: Policy) -> None:
    """A gateway's metrics name every tenant: off loopback, only for a bearer of the token."""
    if (
        policy.identity == "api_key"
        and settings.metrics is not None
        and not _loopback(settings.metrics[0])
        and not settings.metrics_tokens
        and not settings.allow_unauthenticated_metrics
    ):
        host, port = settings.metrics
        raise SettingsError(
            f"--metrics-listen {host}:{port} would serve every tenant's spend to whoever can "
            "connect to it. Set CYCLES_METRICS_TOKEN (Prometheus sends it as a bearer token), "
            "listen on a loopback address, or pass --allow-unauthenticated-metrics if a network "
            "policy already admits only Prometheus to that port."
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
