"""Draining on SIGTERM, so that no call is cancelled for a shutdown.

grpc's own stop() fails every call the transport has received but the application has
not yet picked up: under load that is most of them (they are answered CANCELLED at
once, and the grace is never used). So the server drains before it stops:

1. health turns NOT_SERVING (the caller does that);
2. calls keep being served while the process works through its backlog: until no call
   is running and none has been picked up for `QUIET_SECONDS`, and for no more than half
   the grace (a client that ignores NOT_SERVING cannot hold the process up);
3. then every new call is refused UNAVAILABLE (SHUTTING_DOWN, retryable), and the calls
   already running finish, up to the grace;
4. only then is grpc stopped, with whatever is left of the grace."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# Long enough that a process starved of CPU on a loaded machine does not take a pause of
# its own for the end of the backlog; an idle process (no call for this long) stops at once.
QUIET_SECONDS = 0.5


class Drain:
    def __init__(self) -> None:
        self.in_flight = 0
        self.refusing = False
        self._last_arrival = 0.0
        self._idle = asyncio.Event()
        self._idle.set()

    def arrive(self) -> bool:
        """A call starts; False when it must be refused instead."""
        self._last_arrival = asyncio.get_running_loop().time()
        if self.refusing:
            return False
        self.in_flight += 1
        self._idle.clear()
        return True

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def drain(self, grace: float) -> float:
        """Steps 2 and 3 above; returns what is left of the grace."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + grace
        await _poll(lambda: not self.in_flight and self._quiet(), started + grace / 2)
        self.refusing = True
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            pass
        # Refused calls are answered at once; let those already picked up be answered
        # before the transport closes.
        await _poll(self._quiet, deadline)
        return max(0.0, deadline - loop.time())

    def _quiet(self) -> bool:
        return asyncio.get_running_loop().time() - self._last_arrival >= QUIET_SECONDS


async def _poll(done: Callable[[], bool], until: float) -> None:
    """Until `done()` or the loop time `until`, whichever comes first. Polled: an arrival
    is a timestamp, and quiet is the absence of one."""
    loop = asyncio.get_running_loop()
    while not done() and loop.time() < until:  # noqa: ASYNC110
        await asyncio.sleep(QUIET_SECONDS / 5)
