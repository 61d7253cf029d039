"""The lease table's statements on PostgreSQL itself (store/rbac_leases.py): a renewal
commits only with the current version applied, and a writer waits only for live leases
behind its version. Kept to a bare connection so that `make mutate` can run it for the
SQL's mutants alone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from identity.store.rbac_leases import RbacLeaseRepository

TTL = timedelta(seconds=60)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection]:  # type: ignore[type-arg]
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as c:
        await c.execute("DELETE FROM rbac_cache_leases")
        yield c
        await c.execute("DELETE FROM rbac_cache_leases")


async def _version(conn: psycopg.AsyncConnection) -> int:  # type: ignore[type-arg]
    row = await (await conn.execute("SELECT version FROM rbac_version")).fetchone()
    return int(row["version"])  # type: ignore[index]


async def _bump(conn: psycopg.AsyncConnection) -> int:  # type: ignore[type-arg]
    await conn.execute("UPDATE rbac_version SET version = version + 1")
    return await _version(conn)


async def _lease(conn: psycopg.AsyncConnection, lease_id: uuid.UUID) -> dict | None:  # type: ignore[type-arg]
    cur = await conn.execute(
        "SELECT acked_version, expires_at - now() AS left, host, pid FROM rbac_cache_leases WHERE id = %s",
        (lease_id,),
    )
    return await cur.fetchone()


async def test_a_renewal_records_the_applied_version_for_one_lease_time(conn) -> None:
    leases = RbacLeaseRepository(conn)
    lease = uuid.uuid4()
    current = await _version(conn)
    assert await leases.renew(lease, current, TTL, "host-a", 41) == (current, True)
    row = await _lease(conn, lease)
    assert row is not None
    assert (row["acked_version"], row["host"], row["pid"]) == (current, "host-a", 41)
    assert timedelta(seconds=55) < row["left"] <= TTL
    # A process ahead of the table (it saw a newer version elsewhere) renews too.
    assert await leases.renew(lease, current + 1, timedelta(seconds=120), "host-b", 42) == (current, True)
    row = await _lease(conn, lease)
    assert row is not None
    assert (row["acked_version"], row["host"], row["pid"]) == (current + 1, "host-a", 41)
    assert row["left"] > timedelta(seconds=110)


async def test_a_renewal_behind_the_current_version_is_refused_and_changes_nothing(conn) -> None:
    leases = RbacLeaseRepository(conn)
    lease, fresh = uuid.uuid4(), uuid.uuid4()
    old = await _version(conn)
    await leases.renew(lease, old, TTL, "h", 1)
    before = await _lease(conn, lease)
    newer = await _bump(conn)
    assert await leases.renew(lease, old, timedelta(hours=1), "h", 1) == (newer, False)
    after = await _lease(conn, lease)
    assert after is not None and before is not None
    assert after["acked_version"] == old and after["left"] <= before["left"]
    assert await leases.renew(fresh, old, TTL, "h", 2) == (newer, False)
    assert await _lease(conn, fresh) is None
    assert await leases.renew(lease, newer, TTL, "h", 1) == (newer, True)


async def test_pending_counts_only_live_leases_behind_a_version(conn) -> None:
    leases = RbacLeaseRepository(conn)
    base = await _version(conn)
    behind, caught_up, lapsed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for lease in (behind, caught_up, lapsed):
        await leases.renew(lease, base, TTL, "h", 1)
    await conn.execute(
        "UPDATE rbac_cache_leases SET expires_at = now() - interval '1 second' WHERE id = %s", (lapsed,)
    )
    newer = await _bump(conn)
    assert await leases.pending(newer) == 2
    await leases.renew(caught_up, newer, TTL, "h", 1)
    assert await leases.pending(newer) == 1
    assert await leases.pending(base) == 0
    await leases.release(behind)
    assert await leases.pending(newer) == 0
    assert await _lease(conn, caught_up) is not None


async def test_pruning_removes_only_leases_lapsed_longer_than_asked(conn) -> None:
    leases = RbacLeaseRepository(conn)
    base = await _version(conn)
    old, recent, live = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for lease in (old, recent, live):
        await leases.renew(lease, base, TTL, "h", 1)
    await conn.execute(
        "UPDATE rbac_cache_leases SET expires_at = now() - interval '2 hours' WHERE id = %s", (old,)
    )
    await conn.execute(
        "UPDATE rbac_cache_leases SET expires_at = now() - interval '30 minutes' WHERE id = %s", (recent,)
    )
    await leases.prune(timedelta(hours=1))
    assert await _lease(conn, old) is None
    assert await _lease(conn, recent) is not None and await _lease(conn, live) is not None
