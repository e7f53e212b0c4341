"""Single flight: callers that need the same store work done at the same moment share one run.

A burst of calls on a cold store (a fresh, flushed or failed-over Redis) all meet NOSCRIPT at
once, and all name a tenant this process has not registered yet. Done per caller, a burst of n
calls reloaded every script (tens of kilobytes each, to every master of a cluster) n times and
sent n copies of the same SADD, each over a connection of its own: the store's and the event
loop's work grew with the burst, and on a loaded host the burst's commands then waited past
their timeouts for connections, so a reachable store answered 503. Shared, the burst costs one
reload and one registration, whatever its size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Flights(Generic[K]):
    """At most one run of the work for each key at a time; callers arriving while it runs wait
    for that run and share its outcome (its exception too). A call after it ended runs anew."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[None]] = {}

    async def run(self, key: K, work: Callable[[], Awaitable[None]]) -> None:
        flight = self._running.get(key)
        if flight is None:
            flight = asyncio.ensure_future(work())
            self._running[key] = flight
            flight.add_done_callback(partial(self._landed, key))
        try:
            # A caller that is cancelled stops waiting; the run goes on for the others.
            await asyncio.shield(flight)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if flight.cancelled() and task is not None and not task.cancelling():
                # close() ended the run, not this caller's cancellation: the store is gone.
                raise ConnectionError("the store was closed during this call") from None
            raise

    def _landed(self, key: K, flight: asyncio.Future[None]) -> None:
        if self._running.get(key) is flight:
            del self._running[key]
        if not flight.cancelled():
            flight.exception()  # its waiters raised it; none may be left to retrieve it

    async def close(self) -> None:
        """Cancel the runs still under way (the store is being closed under them)."""
        flights = list(self._running.values())
        for flight in flights:
            flight.cancel()
        await asyncio.gather(*flights, return_exceptions=True)
