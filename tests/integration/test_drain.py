"""Draining: calls keep being taken while the backlog lasts, then refused; the grace bounds it."""

from __future__ import annotations

import asyncio

from identity.api.drain import QUIET_SECONDS, Drain


async def test_the_backlog_is_served_then_new_calls_are_refused() -> None:
    drain = Drain()
    assert drain.arrive()
    stopping = asyncio.create_task(drain.drain(grace=10))
    await asyncio.sleep(QUIET_SECONDS / 2)
    assert drain.arrive()  # still working through what came before: taken
    drain.leave()
    drain.leave()
    await asyncio.sleep(QUIET_SECONDS * 1.5)
    assert drain.refusing and not drain.arrive()
    left = await asyncio.wait_for(stopping, 5)
    assert 0 < left < 10


async def test_a_call_that_never_ends_is_bounded_by_the_grace() -> None:
    drain = Drain()
    assert drain.arrive()
    left = await asyncio.wait_for(drain.drain(grace=1.0), 5)
    assert left == 0 and drain.refusing and drain.in_flight == 1
