"""SingleFlight: callers that ask while a run is under way share it."""

from __future__ import annotations

import asyncio

import pytest

from identity.services.single_flight import SingleFlight


class Job:
    def __init__(self, fail: bool = False) -> None:
        self.runs = 0
        self.release = asyncio.Event()
        self.fail = fail

    async def __call__(self) -> None:
        self.runs += 1
        await self.release.wait()
        if self.fail:
            raise RuntimeError("job failed")


async def test_callers_during_a_run_share_it_and_a_later_call_starts_another() -> None:
    job = Job()
    flight = SingleFlight(job)
    callers = [asyncio.create_task(flight()) for _ in range(20)]
    await asyncio.sleep(0)
    job.release.set()
    await asyncio.gather(*callers)
    assert job.runs == 1
    await flight()
    assert job.runs == 2


async def test_a_failure_reaches_every_caller_of_that_run() -> None:
    job = Job(fail=True)
    flight = SingleFlight(job)
    callers = [asyncio.create_task(flight()) for _ in range(5)]
    await asyncio.sleep(0)
    job.release.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    assert job.runs == 1


async def test_a_cancelled_caller_leaves_the_run_to_the_others() -> None:
    job = Job()
    flight = SingleFlight(job)
    first = asyncio.create_task(flight())
    second = asyncio.create_task(flight())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    job.release.set()
    await second
    assert job.runs == 1
