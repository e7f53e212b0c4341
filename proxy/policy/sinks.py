"""The usage events' sinks (policy `events:`) in their runtime form, each checked where it can
be when the policy loads or reloads: a sink that could never take a batch (its secret's
environment variable unset, a jsonl file it cannot write) is refused then, with the field at
fault, instead of failing every delivery while the outbox grows."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from proxy.policy.issues import Issue
from proxy.policy.runtime import JsonlSink, OpenMeterSink, Sink, UsageEvents, WebhookSink
from proxy.policy.spec import JsonlSinkSpec, PolicySpec, SinkSpec, WebhookSinkSpec


def compile_events(
    spec: PolicySpec, out: list[Issue], env: Mapping[str, str] = os.environ
) -> UsageEvents:
    sinks = [_sink(s, ("events", "sinks", i), out, env) for i, s in enumerate(spec.events.sinks)]
    return UsageEvents(tuple(sinks), spec.events.max_pending, spec.events.source)


def _sink(
    sink: SinkSpec, loc: tuple[str | int, ...], out: list[Issue], env: Mapping[str, str]
) -> Sink:
    if isinstance(sink, WebhookSinkSpec):
        if sink.secret_env is not None:
            _env_set(sink.secret_env, (*loc, "secret_env"), out, env)
        return WebhookSink(sink.url, sink.secret_env)
    if isinstance(sink, JsonlSinkSpec):
        problem = writable(Path(sink.path))
        if problem is not None:
            out.append(Issue((*loc, "path"), problem))
        return JsonlSink(sink.path, sink.max_bytes, sink.keep)
    _env_set(sink.token_env, (*loc, "token_env"), out, env)
    return OpenMeterSink(sink.url.rstrip("/"), sink.token_env)


def _env_set(
    name: str, loc: tuple[str | int, ...], out: list[Issue], env: Mapping[str, str]
) -> None:
    if not env.get(name):
        out.append(Issue(loc, f"the environment variable {name} is not set (or empty)"))


def writable(path: Path) -> str | None:
    """Why events could not be appended to `path` (a NUL in it, its directory missing or not
    writable, the file a directory or not writable, or a name the system refuses), or None."""
    if "\0" in str(path):
        return "a path cannot hold a NUL character"
    directory = path.parent
    try:
        if not directory.is_dir():
            return f"the directory {str(directory)!r} does not exist"
        if not os.access(directory, os.W_OK | os.X_OK):
            return f"the directory {str(directory)!r} is not writable (rotation writes there)"
        if path.is_dir():
            return f"{str(path)!r} is a directory; name a file in it"
        if path.exists() and not os.access(path, os.W_OK):
            return f"{str(path)!r} is not writable"
    except OSError as exc:  # a name too long, a loop of links: the system's reason
        return f"{str(path)!r} cannot be used ({exc.strerror or exc})"
    return None
