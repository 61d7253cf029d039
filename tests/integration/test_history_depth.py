"""Login history at depth: 100,000 rows of one user across 12 monthly partitions,
paged to the end with keyset paging, and EXPLAIN of a time-ranged page showing that
only the partitions in range are read. Isolated database: it plants a lot of rows."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from identity.domain.clock import SystemClock
from identity.domain.models import LoginEvent, Principal
from identity.domain.paging import HistoryCursor, TimeRange
from identity.domain.partitions import add_months, month_start
from identity.services.history import HistoryService
from identity.services.paging import PageTokens
from identity.services.partitions import PartitionService
from identity.store.database import Database
from identity.store.login_history import page_query
from identity.store.migrate import upgrade
from identity.store.partitions import partition_name
from tests.support import TEST_SECRET_KEY, fresh_database

ROWS = 100_000
MONTHS = 12


class Planted:
    def __init__(self, db: Database, user_id: uuid.UUID, first: datetime) -> None:
        self.db = db
        self.user_id = user_id
        self.first = first  # start of the oldest of the 12 months

    def month(self, index: int) -> datetime:
        return add_months(self.first, index)


@pytest.fixture(scope="module")
async def planted() -> AsyncIterator[Planted]:
    with fresh_database("identity_history_depth") as url:
        upgrade(url)
        db = Database(url, min_size=1, max_size=4)
        await db.open()
        first = add_months(month_start(SystemClock().now()), -(MONTHS - 1))
        await PartitionService(db, SystemClock(), months_ahead=0, retention_months=12).ensure(
            MONTHS - 1, first_month=first
        )
        user_id, stranger = uuid.uuid4(), uuid.uuid4()
        end = add_months(first, MONTHS)
        async with db.transaction() as uow:
            # Spread evenly over the 12 months; a few instants repeat, so ties on
            # login_at are broken by id.
            await uow.conn.execute(
                """
                INSERT INTO login_history (login_at, user_id, outcome, ip, user_agent)
                SELECT %(first)s + (%(end)s - %(first)s) * (g / %(rows)s::float8),
                       %(user)s, 'SUCCESS', '192.0.2.1', 'depth test'
                FROM generate_series(0, %(rows)s - 1) g
                """,
                {"first": first, "end": end, "rows": ROWS, "user": user_id},
            )
            await uow.conn.execute(
                """
                INSERT INTO login_history (login_at, user_id, outcome)
                SELECT %(first)s + g * interval '1 hour', %(user)s, 'BAD_CREDENTIALS'
                FROM generate_series(0, 999) g
                """,
                {"first": first, "user": stranger},
            )
        async with db.reader() as uow:
            await uow.conn.execute("ANALYZE login_history")
        yield Planted(db, user_id, first)
        await db.close()


async def test_planted_rows_sit_in_twelve_monthly_partitions(planted):
    async with planted.db.reader() as uow:
        cur = await uow.conn.execute(
            """SELECT tableoid::regclass::text AS part, count(*) AS n FROM login_history
               WHERE user_id = %s GROUP BY 1""",
            (planted.user_id,),
        )
        counts = {row["part"]: row["n"] for row in await cur.fetchall()}
    assert sorted(counts) == sorted(partition_name(planted.month(i)) for i in range(MONTHS))
    assert sum(counts.values()) == ROWS


async def test_paging_to_the_end_is_complete_and_strictly_ordered(planted):
    service = HistoryService(planted.db, PageTokens(TEST_SECRET_KEY.encode()))
    principal = Principal(user_id=planted.user_id, session_id=uuid.uuid4(), token_id="t")
    seen: list[LoginEvent] = []
    token, pages = "", 0
    started = time.perf_counter()
    while True:
        page = await service.list_own(principal, 100, token)
        pages += 1
        seen.extend(page.entries)
        token = page.next_page_token
        if not token:
            break
    elapsed = time.perf_counter() - started
    assert pages == ROWS // 100
    assert len(seen) == ROWS
    keys = [(e.login_at, e.id) for e in seen]
    assert all(a > b for a, b in itertools.pairwise(keys)), "not strictly newest first"
    assert len({e.id for e in seen}) == ROWS
    # Keyset pages cost the same at any depth; a generous bound catches an OFFSET scan.
    assert elapsed < 60, f"{pages} pages took {elapsed:.1f}s"


async def _plan(db: Database, sql: str, params: dict[str, object]) -> str:
    async with db.reader() as uow:
        cur = await uow.conn.execute("EXPLAIN " + sql, params)
        return "\n".join(str(next(iter(row.values()))) for row in await cur.fetchall())


def _partitions_in(plan: str, planted: Planted) -> set[str]:
    names = {partition_name(planted.month(i)) for i in range(-2, MONTHS + 4)} | {"login_history_default"}
    return {name for name in names if name in plan}


async def test_explain_of_a_time_ranged_page_reads_only_partitions_in_range(planted):
    span = TimeRange(planted.month(4), planted.month(6))
    sql, params = page_query(planted.user_id, span, None, 101)
    plan = await _plan(planted.db, sql, params)
    assert _partitions_in(plan, planted) == {
        partition_name(planted.month(4)),
        partition_name(planted.month(5)),
    }

    # A deep page (cursor in month 2) skips every newer month even without a range.
    cursor = HistoryCursor(planted.month(2) + (planted.month(3) - planted.month(2)) / 2, 10**12)
    sql, params = page_query(planted.user_id, TimeRange(), cursor, 101)
    plan = await _plan(planted.db, sql, params)
    assert _partitions_in(plan, planted) == {
        partition_name(planted.month(0)),
        partition_name(planted.month(1)),
        partition_name(planted.month(2)),
        "login_history_default",
    }


async def test_time_ranged_pages_through_the_service(planted):
    service = HistoryService(planted.db, PageTokens(TEST_SECRET_KEY.encode()))
    principal = Principal(user_id=planted.user_id, session_id=uuid.uuid4(), token_id="t")
    start, end = planted.month(7), planted.month(8)
    total, token = 0, ""
    while True:
        page = await service.list_own(principal, 100, token, start, end)
        assert all(start <= e.login_at < end for e in page.entries)
        total += len(page.entries)
        token = page.next_page_token
        if not token:
            break
    async with planted.db.reader() as uow:
        cur = await uow.conn.execute(
            "SELECT count(*) AS n FROM login_history WHERE user_id = %s AND login_at >= %s AND login_at < %s",
            (planted.user_id, start, end),
        )
        expected = (await cur.fetchone())["n"]
    assert total == expected > 0
