"""login_history partitions: one per UTC month (login_history_YYYY_MM) plus DEFAULT.

DDL cannot take bind parameters, so names go through sql.Identifier and bounds
through sql.Literal; every name is built here from a date, never from input."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from psycopg import sql

from identity.domain.partitions import Partition
from identity.store.rows import Conn

PARENT = "login_history"
DEFAULT_PARTITION = "login_history_default"
_COLUMNS = "id, login_at, user_id, outcome, ip, user_agent, session_id"
_BOUND = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")


def partition_name(month: datetime) -> str:
    return f"{PARENT}_{month:%Y_%m}"


def parse_bound(expression: str) -> tuple[datetime | None, datetime | None]:
    """pg_get_expr(relpartbound) text -> (start, end); (None, None) for DEFAULT."""
    if expression.strip() == "DEFAULT":
        return None, None
    match = _BOUND.fullmatch(expression.strip())
    if match is None:
        raise ValueError(f"unexpected partition bound: {expression!r}")
    return datetime.fromisoformat(match.group(1)), datetime.fromisoformat(match.group(2))


class PartitionRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def lock(self) -> None:
        """Serialises partition maintenance across server processes for this transaction."""
        await self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('identity.login_history.partitions'))"
        )

    async def partitions(self, *, with_counts: bool = False) -> list[Partition]:
        """Every partition, oldest first, DEFAULT last. Needs a transaction (SET LOCAL)."""
        # Fixed rendering of the bounds, whatever the server's defaults.
        await self._conn.execute("SET LOCAL datestyle = 'ISO'")
        await self._conn.execute("SET LOCAL timezone = 'UTC'")
        cur = await self._conn.execute(
            """
            SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = %s::regclass
            """,
            (PARENT,),
        )
        found = []
        for row in await cur.fetchall():
            start, end = parse_bound(row["bound"])
            rows = await self._count(row["name"]) if with_counts else None
            found.append(Partition(row["name"], start, end, rows))
        far_future = datetime.max.replace(tzinfo=UTC)
        return sorted(found, key=lambda p: p.start or far_future)

    async def _count(self, name: str) -> int:
        cur = await self._conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(name)))
        row = await cur.fetchone()
        assert row is not None
        return int(row["n"])

    async def create_month(self, month: datetime, end: datetime) -> int:
        """Creates and attaches the partition of [month, end), first moving into it any
        rows of that range that sit in DEFAULT (PostgreSQL refuses the partition while
        DEFAULT holds rows it would own). Returns how many rows moved.

        ATTACH rather than CREATE ... PARTITION OF: it takes a weaker lock on the
        parent, so logins into existing partitions carry on meanwhile."""
        name = sql.Identifier(partition_name(month))
        default = sql.Identifier(DEFAULT_PARTITION)
        # Writers to DEFAULT wait until the move is done (readers do not), so no row of
        # the range can land there between the move and the attach.
        await self._conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(default))
        await self._conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(name, sql.Identifier(PARENT))
        )
        cur = await self._conn.execute(
            sql.SQL(
                """
                WITH moved AS (
                    DELETE FROM {default} WHERE login_at >= {start} AND login_at < {end}
                    RETURNING {columns}
                )
                INSERT INTO {name} ({columns}) SELECT {columns} FROM moved
                """
            ).format(
                default=default,
                name=name,
                columns=sql.SQL(_COLUMNS),
                start=sql.Literal(month),
                end=sql.Literal(end),
            )
        )
        moved = cur.rowcount
        await self._conn.execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(PARENT), name, sql.Literal(month), sql.Literal(end)
            )
        )
        return moved

    async def drop(self, name: str) -> None:
        """Detaches, then drops, one monthly partition. Never the DEFAULT one."""
        if name == DEFAULT_PARTITION:
            raise ValueError("the DEFAULT partition is never dropped")
        await self._conn.execute(
            sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(sql.Identifier(PARENT), sql.Identifier(name))
        )
        await self._conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
