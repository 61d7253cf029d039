"""The lease protocol of authz_sync on the fast tier: an in-memory rbac_version and lease
table, a notification channel the test drives, and a clock that moves only when stepped.
(tests/integration/test_permission_cache_consistency.py runs it against PostgreSQL.)"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from identity.domain.errors import BackendUnavailable
from identity.domain.rbac_changes import LoggedChange, RbacChanges
from identity.services import authz_sync
from identity.services.authz_sync import RbacSync
from tests.fakes import FakeChangeLog, FakeChannel, FakeDatabase, FakeLeases, FrozenClock

# Short, so that the listener, which waits a third of the lease in real time between
# looks at the clock, comes round quickly.
TTL = timedelta(seconds=0.3)
MARGIN = 0.05  # the floor of the margin (a tenth of this lease is less)


class Stack:
    def __init__(self) -> None:
        self.clock = FrozenClock()
        self.db = FakeDatabase(self.clock)
        self.db.state.rbac.version = 5
        self.channel = FakeChannel(self.db)
        self.sync = RbacSync(self.db, self.channel, self.clock, lease_ttl=TTL)  # type: ignore[arg-type]
        self.applied: list[int] = []
        self.sync.on_change(lambda changes: self.applied.append(changes.version))

    @property
    def leases(self) -> dict[uuid.UUID, tuple[int, float]]:
        return self.db.state.rbac.leases

    def own_lease(self) -> tuple[int, float]:
        return self.leases[self.sync.lease_id]

    def bump(self) -> int:
        self.db.state.rbac.version += 1
        return self.db.state.rbac.version


@pytest.fixture
async def stack(monkeypatch: Any) -> AsyncIterator[Stack]:
    # Reconnection back-off a tenth of production's: the same sequence, sooner.
    monkeypatch.setattr(authz_sync, "_RECONNECT_DELAY", 0.05)
    monkeypatch.setattr(authz_sync, "_MAX_RECONNECT_DELAY", 0.5)
    made = Stack()
    yield made
    await made.sync.stop()


async def _until(condition: Any, steps: int = 800) -> None:
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def test_a_new_process_trusts_its_cache_only_once_it_holds_a_lease(stack: Stack) -> None:
    assert not stack.sync.trusted() and stack.sync.applied == -1
    await stack.sync.start()
    assert stack.sync.trusted()
    assert stack.sync.applied == 5 and stack.applied == [5]
    assert stack.own_lease() == (5, 1000.0 + 0.3)
    # Trusted until a margin before the lease ends, measured from before the renewal.
    assert stack.sync.lease_until == pytest.approx(1000.0 + 0.3 - MARGIN)
    stack.clock.advance(timedelta(seconds=0.3 - MARGIN - 0.01))
    assert stack.sync.trusted()
    stack.clock.advance(timedelta(seconds=0.01))
    assert not stack.sync.trusted()


async def test_starting_twice_keeps_one_listener(stack: Stack) -> None:
    await stack.sync.start()
    await stack.sync.start()
    assert len(stack.channel.connections) == 1


async def test_a_notified_change_is_applied_then_acknowledged(stack: Stack) -> None:
    await stack.sync.start()
    version = stack.bump()
    stack.channel.current.notify(version)
    await _until(lambda: stack.own_lease()[0] == version)
    assert stack.sync.applied == version and stack.applied == [5, version]
    assert stack.sync.trusted()


async def test_a_missed_notification_is_caught_up_by_the_next_renewal(stack: Stack) -> None:
    await stack.sync.start()
    version = stack.bump()  # committed, never notified
    stack.clock.advance(timedelta(seconds=0.05))
    await asyncio.sleep(0.15)
    assert stack.own_lease()[0] == 5  # no renewal due yet
    stack.clock.advance(timedelta(seconds=0.06))  # past a third of the lease
    await _until(lambda: stack.own_lease()[0] == version)
    assert stack.sync.applied == version and stack.applied == [5, version]
    assert stack.own_lease()[1] == pytest.approx(stack.clock.monotonic() + 0.3, abs=0.001)


async def test_a_renewal_that_never_catches_up_drops_the_lease(stack: Stack, monkeypatch: Any) -> None:
    await stack.sync.start()
    tries: list[int] = []

    async def always_behind(
        self: FakeLeases, lease_id: uuid.UUID, applied: int, *args: Any
    ) -> tuple[int, bool]:
        tries.append(applied)
        return applied + 1, False

    monkeypatch.setattr(FakeLeases, "renew", always_behind)
    stack.clock.advance(timedelta(seconds=0.11))
    await _until(lambda: len(tries) >= 5)
    await _until(lambda: not stack.sync.trusted())
    assert tries[:5] == [5, 6, 7, 8, 9]
    # Told of 10 by the last refusal, never applied it: never renewed for it either.
    assert stack.sync.seen >= 10 and stack.sync.applied == tries[-1]


async def test_a_lost_connection_drops_the_lease_at_once_and_reconnects(stack: Stack) -> None:
    await stack.sync.start()
    stack.channel.down = True
    stack.channel.current.lose()
    await _until(lambda: not stack.sync.trusted())
    assert not await stack.sync.revalidate()  # not listening: no lease without notifications
    stack.channel.down = False
    await _until(lambda: stack.sync.trusted())
    assert len(stack.channel.connections) == 2


async def test_a_process_that_cannot_reach_postgresql_starts_without_trusting(stack: Stack) -> None:
    stack.channel.down = True
    await stack.sync.start(ready_timeout=0.05)
    assert not stack.sync.trusted()
    assert not await stack.sync.revalidate()


async def test_a_lapsed_lease_is_renewed_once_for_every_waiting_check(stack: Stack, monkeypatch: Any) -> None:
    await stack.sync.start()
    renewals: list[int] = []
    original = FakeLeases.renew

    async def counted(self: FakeLeases, *args: Any) -> tuple[int, bool]:
        if self is not stack.channel.current.leases:  # the listener's own renewals aside
            renewals.append(1)
        await asyncio.sleep(0.01)
        return await original(self, *args)

    monkeypatch.setattr(FakeLeases, "renew", counted)
    stack.clock.advance(timedelta(seconds=0.28))  # lapsed by our clock
    assert not stack.sync.trusted()
    results = await asyncio.gather(*(stack.sync.revalidate() for _ in range(4)))
    assert results == [True] * 4 and len(renewals) == 1
    stack.db.failure = BackendUnavailable()
    stack.clock.advance(timedelta(seconds=0.3))
    with pytest.raises(BackendUnavailable):
        await stack.sync.revalidate()


async def test_a_write_returns_once_every_live_lease_has_applied_it(stack: Stack) -> None:
    await stack.sync.start()
    other = uuid.uuid4()
    stack.leases[other] = (5, stack.clock.monotonic() + 0.3)
    version = stack.bump()
    waiting = asyncio.ensure_future(stack.sync.wait_applied(version))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert stack.own_lease()[0] == version  # this process acknowledged at once
    assert stack.sync.applied == version
    stack.leases[other] = (version, stack.leases[other][1])
    await asyncio.wait_for(waiting, 1)


async def test_a_write_waits_for_a_hung_process_no_longer_than_its_lease(stack: Stack) -> None:
    await stack.sync.start()
    hung = uuid.uuid4()
    stack.leases[hung] = (5, stack.clock.monotonic() + 0.3)
    waiting = asyncio.ensure_future(stack.sync.wait_applied(stack.bump()))
    await asyncio.sleep(0.02)
    stack.clock.advance(timedelta(seconds=0.29))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    stack.clock.advance(timedelta(seconds=0.01))  # the hung lease has lapsed now
    await asyncio.wait_for(waiting, 1)


async def test_a_write_stops_waiting_after_a_lease_and_the_margin_even_if_leases_look_live(
    stack: Stack, monkeypatch: Any
) -> None:
    async def never_done(self: FakeLeases, version: int) -> int:
        return 1

    monkeypatch.setattr(FakeLeases, "pending", never_done)
    waiting = asyncio.ensure_future(stack.sync.wait_applied(stack.bump()))
    await asyncio.sleep(0.02)
    stack.clock.advance(timedelta(seconds=0.3 + MARGIN - 0.01))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    stack.clock.advance(timedelta(seconds=0.01))
    await asyncio.wait_for(waiting, 1)


async def test_a_write_without_a_database_waits_out_the_lease(stack: Stack) -> None:
    stack.db.failure = BackendUnavailable()
    waiting = asyncio.ensure_future(stack.sync.wait_applied(9))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    stack.clock.advance(timedelta(seconds=0.3 + MARGIN))
    await asyncio.wait_for(waiting, 1)
    assert stack.sync.seen == 9
    assert stack.sync.applied == -1  # nothing could be read, so nothing was applied


async def test_a_write_that_loses_the_database_after_its_commit_still_returns(stack: Stack) -> None:
    await stack.sync.start()
    stack.db.failure = BackendUnavailable()
    waiting = asyncio.ensure_future(stack.sync.wait_applied(stack.bump()))
    await asyncio.sleep(0.02)
    stack.clock.advance(timedelta(seconds=0.3 + MARGIN))
    await asyncio.wait_for(waiting, 1)


async def test_stopping_gives_up_the_lease(stack: Stack) -> None:
    await stack.sync.start()
    assert stack.sync.lease_id in stack.leases
    await stack.sync.stop()
    assert not stack.sync.trusted()
    assert stack.sync.lease_id not in stack.leases
    await stack.sync.stop()


async def test_start_prunes_leases_of_processes_long_gone(stack: Stack) -> None:
    gone, recent = uuid.uuid4(), uuid.uuid4()
    stack.leases[gone] = (1, stack.clock.monotonic() - 3601)
    stack.leases[recent] = (1, stack.clock.monotonic() - 3599)
    await stack.sync.start()
    assert gone not in stack.leases and recent in stack.leases


async def test_each_process_holds_a_lease_of_its_own_naming_its_host_and_pid(stack: Stack) -> None:
    other = RbacSync(stack.db, stack.channel, stack.clock, lease_ttl=TTL)  # type: ignore[arg-type]
    await stack.sync.start()
    await other.start()
    try:
        assert other.lease_id != stack.sync.lease_id
        assert set(stack.leases) == {stack.sync.lease_id, other.lease_id}
        assert stack.db.state.rbac.lease_owners[stack.sync.lease_id] == (socket.gethostname(), os.getpid())
    finally:
        await other.stop()


async def test_the_listener_renews_over_its_own_connection_and_only_when_due(stack: Stack) -> None:
    await stack.sync.start()
    listening = stack.channel.current.leases
    first = listening.renewals  # refused at version -1, then renewed at 5
    assert first == 2
    await asyncio.sleep(0.25)  # a few of the listener's wake-ups, with the clock standing still
    assert listening.renewals == first
    assert len(stack.channel.connections) == 1  # the same connection throughout
    stack.clock.advance(timedelta(seconds=0.11))
    await _until(lambda: listening.renewals == first + 1)
    stack.channel.current.notify(stack.bump())
    await _until(lambda: listening.renewals == first + 2)
    assert stack.own_lease()[0] == stack.db.state.rbac.version


async def test_a_process_that_is_not_listening_takes_no_lease(stack: Stack) -> None:
    assert not await stack.sync.revalidate()
    assert stack.leases == {}
    await stack.sync.start()
    await stack.sync.stop()
    assert not await stack.sync.revalidate()
    assert stack.leases == {}


async def test_a_process_started_while_postgresql_is_down_keeps_trying_until_it_is_back(stack: Stack) -> None:
    stack.channel.down = True
    stack.db.failure = BackendUnavailable()
    await stack.sync.start(ready_timeout=0.01)
    await asyncio.sleep(0.15)  # past the first retries: still down
    assert not stack.sync.trusted()
    stack.channel.down = False
    stack.db.failure = None
    await _until(lambda: stack.sync.trusted(), steps=600)


async def test_observing_records_a_version_that_the_next_catch_up_applies_once(stack: Stack) -> None:
    stack.sync.observe(7)
    stack.sync.observe(7)
    stack.sync.observe(6)
    assert stack.sync.seen == 7 and stack.sync.applied == -1 and stack.applied == []
    await stack.sync.catch_up()
    await stack.sync.catch_up()
    assert stack.sync.applied == 7 and stack.applied == [7]


async def test_a_notified_change_hands_the_caches_only_what_the_log_names(stack: Stack) -> None:
    given: list[RbacChanges] = []
    stack.sync.on_change(given.append)
    await stack.sync.start()
    user = uuid.uuid4()
    version = stack.bump()
    stack.db.state.rbac.changes.append(LoggedChange(version, "user", user_id=user))
    stack.channel.current.notify(version)
    await _until(lambda: stack.own_lease()[0] == version)
    assert given == [RbacChanges.all_at(5), RbacChanges(version, users=frozenset({user}))]
    assert stack.channel.current.changes.reads == 1  # on the listening connection


async def test_a_version_whose_changes_cannot_be_read_is_never_acknowledged(
    stack: Stack, monkeypatch: Any
) -> None:
    await stack.sync.start()
    original = FakeChangeLog.between

    async def unreadable(self: FakeChangeLog, *args: Any) -> Any:
        raise BackendUnavailable()

    monkeypatch.setattr(FakeChangeLog, "between", unreadable)
    version = stack.bump()
    stack.db.state.rbac.changes.append(LoggedChange(version, "none"))
    stack.channel.current.notify(version)
    await _until(lambda: not stack.sync.trusted())
    await asyncio.sleep(0.1)  # reconnecting meanwhile, and failing to apply again
    assert stack.own_lease()[0] == 5 and stack.sync.applied == 5
    monkeypatch.setattr(FakeChangeLog, "between", original)
    await _until(lambda: stack.own_lease()[0] == version and stack.sync.trusted())
    assert stack.sync.applied == version
