"""Where usage events go (policy `events.sinks`): each takes a batch and says whether it took it.

    webhook    POST the batch as a JSON array, signed as alerts are (alerts.py: headers
               X-Cycles-Timestamp and X-Cycles-Signature, when `secret_env` names the secret)
    jsonl      append one event per line to `path`, then fsync: a batch acknowledged is on disk.
               Before a line would take the file past `max_bytes` it is rotated (`path` ->
               `path.1` -> … -> `path.<keep>`, the oldest overwritten)
    openmeter  POST the batch to `<url>/api/v1/events` as `application/cloudevents-batch+json`,
               with `Authorization: Bearer <token>` (the token read from `token_env` on each
               delivery)

`deliver` returns None when the sink took the batch (a 2xx answer, the lines written and
synced), else what went wrong; the sender retries.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import orjson

from proxy.gateway.alerts import post, signed_headers
from proxy.policy.runtime import JsonlSink, OpenMeterSink, Sink, Webhook, WebhookSink

BATCH_TYPE = "application/cloudevents-batch+json"


def kind(sink: Sink) -> str:
    """The sink's type as the policy names it (metric label)."""
    if isinstance(sink, WebhookSink):
        return "webhook"
    return "jsonl" if isinstance(sink, JsonlSink) else "openmeter"


async def deliver(
    session: aiohttp.ClientSession, sink: Sink, events: Sequence[dict[str, Any]]
) -> str | None:
    """Hand `events` to `sink`: None when it took them, else what went wrong."""
    if isinstance(sink, JsonlSink):
        lines = [orjson.dumps(e) + b"\n" for e in events]
        try:
            await asyncio.to_thread(append, sink, lines)
        except OSError as exc:
            return f"{sink.path}: {exc}"
        return None
    body = orjson.dumps(list(events))
    if isinstance(sink, WebhookSink):
        headers = signed_headers(Webhook(sink.url, sink.secret_env), body, os.environ)
        if headers is None:
            return f"{sink.secret_env} is not set"
        return await post(session, sink.url, body, headers)
    return await _openmeter(session, sink, body)


async def _openmeter(
    session: aiohttp.ClientSession, sink: OpenMeterSink, body: bytes
) -> str | None:
    token = os.environ.get(sink.token_env)
    if not token:
        return f"{sink.token_env} is not set"
    headers = {"Content-Type": BATCH_TYPE, "Authorization": f"Bearer {token}"}
    return await post(session, f"{sink.url}/api/v1/events", body, headers)


def append(sink: JsonlSink, lines: Sequence[bytes]) -> None:
    """Append `lines` to the sink's file, rotating it before a line that would take it past
    `max_bytes` (a line longer than that alone gets a file of its own); synced."""
    path = Path(sink.path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = 0
    out = path.open("ab")
    try:
        for line in lines:
            if size and size + len(line) > sink.max_bytes:
                _sync(out)
                out.close()
                rotate(path, sink.keep)
                out, size = path.open("ab"), 0
            out.write(line)
            size += len(line)
        _sync(out)
    finally:
        out.close()


def _sync(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


def rotate(path: Path, keep: int) -> None:
    """`path` -> `path.1`, each `path.<n>` -> `path.<n+1>`; `path.<keep>` is overwritten."""
    for n in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))
