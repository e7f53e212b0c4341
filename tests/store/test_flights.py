"""store/redis/flights.py: callers needing the same store work at once share one run of it."""

from __future__ import annotations

import asyncio

import pytest

from proxy.store.redis.flights import Flights


class Work:
    """Store work that waits for `release`, counting its runs; fails if told to."""

    def __init__(self, fail: bool = False) -> None:
        self.runs = 0
        self.release = asyncio.Event()
        self.fail = fail

    async def __call__(self) -> None:
        self.runs += 1
        await self.release.wait()
        if self.fail:
            raise ConnectionError("store lost")


async def test_callers_at_once_share_one_run_and_its_failure_and_a_later_call_runs_anew() -> None:
    flights: Flights[str] = Flights()
    work = Work(fail=True)
    waiting = [asyncio.ensure_future(flights.run("scripts", work)) for _ in range(20)]
    await asyncio.sleep(0)  # every caller is waiting now (time passing is the scenario)
    work.release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert work.runs == 1
    assert all(isinstance(r, ConnectionError) for r in results)
    work.fail = False
    await flights.run("scripts", work)
    assert work.runs == 2


async def test_a_cancelled_caller_leaves_the_run_to_the_others() -> None:
    flights: Flights[str] = Flights()
    work = Work()
    first = asyncio.ensure_future(flights.run("t", work))
    second = asyncio.ensure_future(flights.run("t", work))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    work.release.set()
    await second
    assert first.cancelled() and work.runs == 1


async def test_close_ends_the_runs_and_their_callers_see_a_lost_store() -> None:
    flights: Flights[str] = Flights()
    work = Work()
    caller = asyncio.ensure_future(flights.run("scripts", work))
    await asyncio.sleep(0)
    await flights.close()
    with pytest.raises(ConnectionError, match="closed"):
        await caller
