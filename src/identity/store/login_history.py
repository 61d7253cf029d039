"""login_history: every authentication attempt, partitioned by month on login_at."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from identity.domain.models import LoginEvent, LoginOutcome
from identity.domain.paging import HistoryCursor, TimeRange
from identity.store.rows import Conn, Row, ip_text


def _event(row: Row) -> LoginEvent:
    return LoginEvent(
        login_at=row["login_at"],
        outcome=LoginOutcome(row["outcome"]),
        ip=ip_text(row["ip"]),
        user_agent=row["user_agent"],
        session_id=row["session_id"],
        id=row["id"],
    )


def page_query(
    user_id: UUID, span: TimeRange, after: HistoryCursor | None, limit: int
) -> tuple[str, dict[str, object]]:
    """The SQL of one page, built with only the bounds that are set: a bound written as
    a plain comparison on login_at is what lets the planner skip whole partitions.
    The keyset repeats `login_at <=` beside the row comparison for the same reason,
    so deep pages do not touch the newer months at all."""
    where = ["user_id = %(user_id)s"]
    params: dict[str, object] = {"user_id": user_id, "limit": limit}
    if span.start is not None:
        where.append("login_at >= %(start)s")
        params["start"] = span.start
    if span.end is not None:
        where.append("login_at < %(end)s")
        params["end"] = span.end
    if after is not None:
        where.append("login_at <= %(after_at)s AND (login_at, id) < (%(after_at)s, %(after_id)s)")
        params.update(after_at=after.login_at, after_id=after.id)
    # Only fixed clauses are joined; every value travels as a parameter.
    sql = f"""
        SELECT id, login_at, outcome, ip, user_agent, session_id FROM login_history
        WHERE {" AND ".join(where)}
        ORDER BY login_at DESC, id DESC
        LIMIT %(limit)s
    """  # noqa: S608
    return sql, params


class LoginHistoryRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def record(
        self,
        *,
        user_id: UUID | None,
        outcome: LoginOutcome,
        ip: str | None,
        user_agent: str,
        session_id: UUID | None = None,
        at: datetime,
    ) -> None:
        await self._conn.execute(
            """
            INSERT INTO login_history (login_at, user_id, outcome, ip, user_agent, session_id)
            VALUES (%s, %s, %s, %s, %s, %s)
            """,
            (at, user_id, outcome.value, ip, user_agent, session_id),
        )

    async def page_for_user(
        self, user_id: UUID, *, span: TimeRange, after: HistoryCursor | None, limit: int
    ) -> list[LoginEvent]:
        """One user's entries, newest first (login_at, then id, descending)."""
        sql, params = page_query(user_id, span, after, limit)
        cur = await self._conn.execute(sql, params)
        return [_event(row) for row in await cur.fetchall()]
