"""Waiting for every server process to acknowledge a commit, shared by the two leases
(the permission cache's, services/authz_sync.py, and the ended sessions', services/
ended_sessions.py).

A writer that has committed a change polls how many live leases have not yet
acknowledged it, until none or until the lease time (plus margin) has passed: by then
every lease that existed at the commit has lapsed, and none can have been renewed
without acknowledging the change (a renewal applies what is committed first)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from identity.domain.clock import Clock
from identity.domain.errors import BackendUnavailable

_FIRST_DELAY = 0.001
_MAX_DELAY = 0.05


async def until_acknowledged(
    unacknowledged: Callable[[], Awaitable[int | None]], deadline: float, clock: Clock
) -> None:
    """Returns once `unacknowledged()` says 0 or the monotonic `deadline` has passed.
    None (the count cannot be read) and a PostgreSQL that does not answer both mean
    "not yet": the deadline still bounds the wait."""
    delay = _FIRST_DELAY
    while True:
        with contextlib.suppress(BackendUnavailable):
            if await unacknowledged() == 0:
                return
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            return
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, _MAX_DELAY)
