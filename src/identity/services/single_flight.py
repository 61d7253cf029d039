"""One run of an async job, shared by every caller that asks for it while it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # reported to the awaiters; not "never retrieved"


class SingleFlight:
    """`await flight()` starts the job unless a run is under way, and waits for that run.
    A caller that is cancelled leaves the run going for the others (shield)."""

    def __init__(self, job: Callable[[], Awaitable[None]]) -> None:
        self._job = job
        self._running: asyncio.Future[None] | None = None

    async def __call__(self) -> None:
        running = self._running
        if running is None or running.done():
            running = asyncio.ensure_future(self._job())
            running.add_done_callback(_retrieve)
            self._running = running
        await asyncio.shield(running)
