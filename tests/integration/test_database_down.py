"""When the database is called down: a live server answering late, or a pool whose every
connection is busy, is not a server gone (calling it down would fail every call of the
process for a probe interval); a refused connection is."""

from __future__ import annotations

import asyncio

import pytest

from identity.domain.errors import BackendUnavailable
from identity.store.database import Database


async def _settled(db: Database) -> None:
    for _ in range(100):
        task = getattr(db, "_suspicion", None)  # the background check of a suspicion
        if task is None or task.done():
            return
        await asyncio.sleep(0.05)


async def test_a_unit_cut_by_the_time_bound_on_a_live_server_leaves_it_up(database_url) -> None:
    db = Database(database_url, min_size=1, max_size=2, statement_timeout=1.0)
    await db.open()
    try:
        with pytest.raises(BackendUnavailable):
            async with db.reader():
                await asyncio.sleep(1.5)  # the unit overruns its bound, holding a connection
        await _settled(db)
        assert not db.known_down
        async with db.reader() as uow:
            assert await uow.session_revocations.current() >= 0
    finally:
        await db.close()


async def test_a_health_check_that_finds_every_connection_busy_is_not_a_failure(database_url) -> None:
    db = Database(database_url, min_size=1, max_size=1, timeout=5.0)
    await db.open()
    try:
        holding = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with db.reader():
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()
        assert await db.ping()  # waited for the pool, then asked the server directly
        assert not db.known_down
        release.set()
        await holder
    finally:
        await db.close()


async def test_a_refused_connection_marks_it_down_at_once() -> None:
    # A port nothing listens on: connecting is refused.
    db = Database("postgresql://postgres@127.0.0.1:1/none", min_size=0, max_size=1, connect_timeout=1.0)
    await db.open()
    try:
        assert not await db.ping()
        assert db.known_down
        with pytest.raises(BackendUnavailable):
            async with db.reader():
                pass
    finally:
        await db.close()
