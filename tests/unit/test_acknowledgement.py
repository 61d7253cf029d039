"""The writer's wait for every lease to acknowledge its commit (services/acknowledgement.py),
shared by the permission cache's lease and the ended sessions' lease."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from identity.domain.errors import BackendUnavailable
from identity.services import acknowledgement
from identity.services.acknowledgement import until_acknowledged
from tests.fakes import FrozenClock


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays slept, without sleeping."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(acknowledgement.asyncio, "sleep", sleep)
    return slept


def counts(
    *answers: int | Exception | None, clock: FrozenClock | None = None, step: float = 0.0
) -> tuple[Callable[[], Awaitable[int | None]], list[int]]:
    """An `unacknowledged` that gives `answers` in turn (raising the exceptions), moving
    `clock` on by `step` seconds at each call; it repeats the last answer."""
    calls: list[int] = []

    async def unacknowledged() -> int | None:
        calls.append(1)
        if clock is not None:
            clock.advance(timedelta(seconds=step))
        answer = answers[min(len(calls), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return unacknowledged, calls


async def test_returns_at_once_when_every_lease_has_acknowledged(sleeps: list[float]) -> None:
    clock = FrozenClock()
    unacknowledged, calls = counts(0)
    await until_acknowledged(unacknowledged, clock.monotonic() + 10, clock)
    assert len(calls) == 1 and sleeps == []


async def test_polls_with_doubling_delays_until_none_is_left(sleeps: list[float]) -> None:
    clock = FrozenClock()
    unacknowledged, calls = counts(3, 2, 2, 1, 1, 1, 1, 1, 0)
    await until_acknowledged(unacknowledged, clock.monotonic() + 10, clock)
    assert len(calls) == 9
    assert sleeps == [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05]


async def test_a_database_that_does_not_answer_and_an_unknown_count_mean_not_yet(sleeps: list[float]) -> None:
    clock = FrozenClock()
    unacknowledged, calls = counts(BackendUnavailable(), None, 1, 0)
    await until_acknowledged(unacknowledged, clock.monotonic() + 10, clock)
    assert len(calls) == 4 and len(sleeps) == 3


async def test_gives_up_at_the_deadline_and_never_sleeps_past_it(sleeps: list[float]) -> None:
    clock = FrozenClock()
    deadline = clock.monotonic() + 0.1
    unacknowledged, calls = counts(1, clock=clock, step=0.03)
    await until_acknowledged(unacknowledged, deadline, clock)
    # Checked at +0.03, +0.06, +0.09 (sleeping at most what is left), then +0.12: past it.
    assert len(calls) == 4
    assert sleeps == [0.001, 0.002, 0.004]


async def test_sleeps_only_what_is_left_before_the_deadline(sleeps: list[float]) -> None:
    clock = FrozenClock()
    deadline = clock.monotonic() + 0.0015
    clock_steps = iter([0.0, 0.001, 0.001])

    async def unacknowledged() -> int:
        clock.advance(timedelta(seconds=next(clock_steps)))
        return 1

    await until_acknowledged(unacknowledged, deadline, clock)
    assert sleeps == [0.001, pytest.approx(0.0005)]


async def test_really_sleeps_between_polls() -> None:
    clock = FrozenClock()
    unacknowledged, calls = counts(1, 0)
    started = asyncio.get_running_loop().time()
    await until_acknowledged(unacknowledged, clock.monotonic() + 10, clock)
    assert len(calls) == 2 and asyncio.get_running_loop().time() - started >= 0.001


async def test_at_exactly_the_deadline_it_returns_without_sleeping(sleeps: list[float]) -> None:
    clock = FrozenClock()
    deadline = clock.monotonic() + 0.03
    unacknowledged, calls = counts(1, clock=clock, step=0.03)
    await until_acknowledged(unacknowledged, deadline, clock)
    assert len(calls) == 1 and sleeps == []
