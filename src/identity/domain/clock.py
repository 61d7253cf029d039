"""Time, passed in. Nothing in services or the api reads a clock of its own: the
composition root hands every part one `Clock`, and tests hand them a `SteppedClock`
they move forward instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never go back, for measuring intervals
        (lease validity, cache deadlines)."""
        ...


def _boottime() -> float:
    # Keeps counting while the machine is suspended, unlike CLOCK_MONOTONIC: a lease
    # must never look valid after a suspend longer than itself.
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class SystemClock:
    """The real time."""

    monotonic = staticmethod(_boottime if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic)

    def now(self) -> datetime:
        return datetime.now(UTC)


class SteppedClock:
    """The real time plus an offset that only grows: `advance` jumps forward as if that
    much time had passed, for wall-clock and interval readings alike."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self._offset = offset
        self._system = SystemClock()

    @property
    def offset(self) -> timedelta:
        return self._offset

    def advance(self, by: timedelta) -> None:
        if by < timedelta(0):
            raise ValueError("a clock is only stepped forward")
        self._offset += by

    def now(self) -> datetime:
        return self._system.now() + self._offset

    def monotonic(self) -> float:
        return self._system.monotonic() + self._offset.total_seconds()
