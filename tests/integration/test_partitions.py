"""login_history partition maintenance on isolated databases (these tests create,
move and drop partitions, which would disturb the suite's shared database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta

import psycopg
import pytest

from identity.domain.clock import SystemClock
from identity.domain.errors import InvalidArgument
from identity.domain.partitions import add_months, month_start
from identity.server import start_server
from identity.services.partitions import PartitionService
from identity.store.database import Database
from identity.store.migrate import upgrade
from identity.store.partitions import partition_name
from tests.integration.harness import server_with
from tests.rbac_support import identity_cli as run_cli
from tests.support import fresh_database, test_settings

MIGRATION_MONTHS_AHEAD = 3  # what 0001 creates: the current month and three more


@pytest.fixture
def isolated_url() -> Iterator[str]:
    with fresh_database("identity_partitions") as url:
        upgrade(url)
        yield url


@pytest.fixture
async def db(isolated_url: str) -> AsyncIterator[Database]:
    database = Database(isolated_url, min_size=1, max_size=6)
    await database.open()
    yield database
    await database.close()


def _service(db: Database, months_ahead: int = 3, retention: int = 12) -> PartitionService:
    return PartitionService(db, SystemClock(), months_ahead=months_ahead, retention_months=retention)


def _month(offset: int) -> datetime:
    return add_months(month_start(SystemClock().now()), offset)


async def _names(db: Database) -> list[str]:
    return [p.name for p in await _service(db).list_partitions()]


async def _count(db: Database, table: str, where: str = "TRUE") -> int:
    async with db.reader() as uow:
        cur = await uow.conn.execute(f"SELECT count(*) AS n FROM {table} WHERE {where}")
        row = await cur.fetchone()
    return int(row["n"])


async def _plant(db: Database, moments: list[datetime]) -> None:
    async with db.transaction() as uow:
        for at in moments:
            await uow.conn.execute(
                "INSERT INTO login_history (login_at, user_id, outcome) "
                "VALUES (%s, gen_random_uuid(), 'SUCCESS')",
                (at,),
            )


async def test_ensure_creates_only_the_missing_months(db):
    created = await _service(db).ensure(6)
    expected = [partition_name(_month(i)) for i in range(MIGRATION_MONTHS_AHEAD + 1, 7)]
    assert [c.name for c in created] == expected
    assert all(c.moved_rows == 0 for c in created)
    assert created[0].start == _month(4) and created[0].end == _month(5)
    assert await _service(db).ensure(6) == []
    names = await _names(db)
    assert names == [partition_name(_month(i)) for i in range(7)] + ["login_history_default"]


async def test_ensure_moves_rows_out_of_default_and_loses_none(db):
    five, seven = _month(5), _month(7)
    in_five = [five, five + timedelta(days=3), _month(6) - timedelta(microseconds=1)]
    beyond = [seven + timedelta(hours=1)]  # a month ensure(6) does not create: stays in DEFAULT
    before_five = [five - timedelta(microseconds=1)]  # belongs to month 4, also still in DEFAULT
    await _plant(db, in_five + beyond + before_five)
    assert await _count(db, "login_history_default") == 5
    total_before = await _count(db, "login_history")

    # PostgreSQL on its own refuses a partition whose rows sit in DEFAULT: that is why
    # ensure moves them first.
    async with db.reader() as uow:
        with pytest.raises(psycopg.errors.CheckViolation):
            await uow.conn.execute(
                f"CREATE TABLE {partition_name(five)} PARTITION OF login_history "
                f"FOR VALUES FROM ('{five.isoformat()}') TO ('{_month(6).isoformat()}')"
            )

    created = {c.name: c.moved_rows for c in await _service(db).ensure(6)}
    assert created == {partition_name(_month(4)): 1, partition_name(five): 3, partition_name(_month(6)): 0}
    assert await _count(db, "login_history") == total_before
    assert await _count(db, partition_name(five)) == 3
    assert await _count(db, "login_history_default") == 1
    listed = {p.name: p.rows for p in await _service(db).list_partitions()}
    assert listed[partition_name(five)] == 3 and listed["login_history_default"] == 1
    # The moved partition got the parent's indexes (the user index included).
    async with db.reader() as uow:
        cur = await uow.conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s", (partition_name(five),)
        )
        indexes = " ".join(row["indexdef"] for row in await cur.fetchall())
    assert "user_id" in indexes and "login_at" in indexes


async def test_new_logins_route_into_created_partitions(db):
    await _service(db).ensure(6)
    await _plant(db, [_month(6) + timedelta(days=1)])
    assert await _count(db, partition_name(_month(6))) == 1
    assert await _count(db, "login_history_default") == 0


async def test_concurrent_ensure_runs_take_turns(db):
    await _plant(db, [_month(8) + timedelta(days=2)] * 4)
    runs = await asyncio.gather(*(_service(db).ensure(10) for _ in range(5)))
    created = [c for run in runs for c in run]
    assert sorted(c.name for c in created) == sorted(partition_name(_month(i)) for i in range(4, 11))
    assert sum(c.moved_rows for c in created) == 4
    assert await _count(db, partition_name(_month(8))) == 4


async def test_ensure_rejects_silly_horizons(db):
    for bad in (-1, 10_000):
        with pytest.raises(InvalidArgument):
            await _service(db).ensure(bad)


async def test_prune_drops_partitions_past_retention_but_never_default(db):
    await _service(db).ensure(15, first_month=_month(-15))
    await _plant(db, [_month(-15) + timedelta(days=1), _month(-12) + timedelta(days=1), _month(-40)])
    assert await _count(db, "login_history_default") == 1

    dry = await _service(db).prune(12, dry_run=True)
    expected = [partition_name(_month(i)) for i in (-15, -14, -13)]
    assert [p.name for p in dry.dropped] == expected
    assert dry.cutoff == _month(-12)
    assert partition_name(_month(-15)) in await _names(db)

    result = await _service(db).prune(12)
    assert [p.name for p in result.dropped] == expected
    names = await _names(db)
    assert not set(expected) & set(names)
    assert partition_name(_month(-12)) in names and "login_history_default" in names
    assert await _count(db, "login_history_default") == 1
    assert await _count(db, partition_name(_month(-12))) == 1
    assert (await _service(db).prune(12)).dropped == []
    with pytest.raises(InvalidArgument):
        await _service(db).prune(0)


async def test_prune_uses_the_configured_retention_by_default(db):
    await _service(db).ensure(5, first_month=_month(-5))
    result = await _service(db, retention=3).prune()
    assert [p.name for p in result.dropped] == [partition_name(_month(-5)), partition_name(_month(-4))]


async def test_server_ensures_at_start_up_and_again_periodically(isolated_url):
    overrides = {"partition_months_ahead": 5, "partition_maintenance_interval": timedelta(milliseconds=200)}
    async with server_with(isolated_url, **overrides) as (_, running):
        db = running.services.db
        assert partition_name(_month(5)) in await _names(db)
        async with db.transaction() as uow:
            await uow.partitions.lock()
            await uow.partitions.drop(partition_name(_month(5)))
        for _ in range(50):
            await asyncio.sleep(0.1)
            if partition_name(_month(5)) in await _names(db):
                break
        assert partition_name(_month(5)) in await _names(db)


async def test_servers_starting_together_share_the_work(isolated_url):
    settings = test_settings(isolated_url, partition_months_ahead=8)
    servers = await asyncio.gather(*(start_server(settings) for _ in range(3)))
    try:
        names = await _names(servers[0].services.db)
        assert names == [partition_name(_month(i)) for i in range(9)] + ["login_history_default"]
    finally:
        await asyncio.gather(*(s.stop(0.5) for s in servers))


async def test_partitions_cli_ensure_list_prune(isolated_url):
    ensured = await run_cli(isolated_url, "partitions", "ensure", "--months-ahead", "5")
    assert ensured.exit_code == 0, ensured.output
    assert f"created {partition_name(_month(5))}" in ensured.output
    again = await run_cli(isolated_url, "partitions", "ensure", "--months-ahead", "5")
    assert "nothing to do" in again.output

    listed = await run_cli(isolated_url, "partitions", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["PARTITION", "FROM", "TO", "ROWS"]
    current = next(line for line in lines if line.startswith(partition_name(_month(0))))
    assert current.split() == [
        partition_name(_month(0)),
        _month(0).date().isoformat(),
        _month(1).date().isoformat(),
        "0",
    ]
    assert lines[-1].split() == ["login_history_default", "DEFAULT", "0"]

    pruned = await run_cli(isolated_url, "partitions", "prune", "--older-than", "1", "--dry-run")
    assert pruned.exit_code == 0 and "nothing to drop" in pruned.output
    bad = await run_cli(isolated_url, "partitions", "prune", "--older-than", "0")
    assert bad.exit_code == 1 and "retention" in bad.output


async def test_months_ready_ahead_counts_months_without_a_gap(db):
    service = _service(db)
    assert await service.months_ready_ahead() == MIGRATION_MONTHS_AHEAD
    # A month beyond a gap does not count, until the gap is filled.
    await service.ensure(0, first_month=_month(MIGRATION_MONTHS_AHEAD + 2))
    assert await service.months_ready_ahead() == MIGRATION_MONTHS_AHEAD
    await service.ensure(0, first_month=_month(MIGRATION_MONTHS_AHEAD + 1))
    assert await service.months_ready_ahead() == MIGRATION_MONTHS_AHEAD + 2
    # Without even the current month's partition: -1.
    await service.prune(1, now=_month(2))
    assert await service.months_ready_ahead() == -1
