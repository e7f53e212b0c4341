"""Every background task is created here: named, strongly referenced, and its failure logged.

A task that ends with a `ClientError` did what it was for: that error is the answer its caller
gives the client (a call's forward-and-settle task raises BadGateway when the provider's answer
was cut), so it is one warning line, not an ERROR with a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from proxy.core.errors import ClientError

log = logging.getLogger(__name__)
T = TypeVar("T")

_running: set[asyncio.Task[Any]] = set()
RECANCEL_S = 0.1


def spawn(coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
    """Start `coro` as a tracked task; it cannot be garbage-collected while it runs."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if isinstance(exc, ClientError):
        log.warning("task %s answered %d: %s", task.get_name(), exc.status, exc.message)
    elif exc is not None:
        log.error("background task %s failed", task.get_name(), exc_info=exc)


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it to end, cancelling it again until it does: on Python 3.11
    `asyncio.wait_for`, which redis-py puts around every command it sends, drops a cancellation
    that lands just as the send completes (CPython gh-86296), and the task would carry on. A
    failure of the task itself is raised here, as awaiting it would."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=RECANCEL_S)
    if not task.cancelled():
        task.result()


def running() -> frozenset[asyncio.Task[Any]]:
    """Tasks still in flight (settlements included): shutdown waits for these."""
    return frozenset(_running)
