"""Ended sessions (migration 0007): the numbered record, the leases of the processes that
answer token checks from memory, and the connection that hears new numbers.

See identity.services.ended_sessions for the protocol these statements implement."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from identity.store.notifications import highest_notified, listening
from identity.store.rows import Conn
from identity.store.sessions import SessionRepository

CHANNEL = "identity_sessions"


@dataclass(frozen=True)
class Revocation:
    seq: int
    session_id: UUID
    user_id: UUID
    ended_at: datetime
    reason: str


class SessionRevocationRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def current(self) -> int:
        cur = await self._conn.execute("SELECT seq FROM session_revocation_seq")
        row = await cur.fetchone()
        assert row is not None
        return int(row["seq"])

    async def after(self, seq: int, *, ended_since: timedelta, limit: int = 10000) -> list[Revocation]:
        """Revocations numbered above `seq` that ended within `ended_since` (the older ones
        concern no token that still verifies), in order."""
        cur = await self._conn.execute(
            """
            SELECT seq, session_id, user_id, ended_at, reason FROM session_revocations
            WHERE seq > %s AND ended_at > now() - %s
            ORDER BY seq LIMIT %s
            """,
            (seq, ended_since, limit),
        )
        return [
            Revocation(int(r["seq"]), r["session_id"], r["user_id"], r["ended_at"], r["reason"])
            for r in await cur.fetchall()
        ]

    async def renew(
        self, lease_id: UUID, applied: int, ttl: timedelta, host: str, pid: int
    ) -> tuple[int, bool]:
        """As RbacLeaseRepository.renew: extends the lease only if `applied` is the current
        number; the share lock orders it against a writer's bump. (current, renewed)."""
        cur = await self._conn.execute(
            """
            WITH current AS (SELECT seq FROM session_revocation_seq FOR SHARE),
            renewed AS (
                INSERT INTO session_state_leases (id, acked_seq, expires_at, host, pid)
                SELECT %(id)s, %(seq)s, now() + %(ttl)s, %(host)s, %(pid)s
                FROM current WHERE current.seq <= %(seq)s
                ON CONFLICT (id) DO UPDATE
                    SET acked_seq = EXCLUDED.acked_seq, expires_at = EXCLUDED.expires_at
                RETURNING 1
            )
            SELECT current.seq, EXISTS (SELECT 1 FROM renewed) AS renewed FROM current
            """,
            {"id": lease_id, "seq": applied, "ttl": ttl, "host": host, "pid": pid},
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["seq"]), bool(row["renewed"])

    async def pending(self, seq: int) -> int:
        cur = await self._conn.execute(
            """
            SELECT count(*) AS n FROM session_state_leases
            WHERE acked_seq < %s AND expires_at > clock_timestamp()
            """,
            (seq,),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["n"])

    async def release(self, lease_id: UUID) -> None:
        await self._conn.execute("DELETE FROM session_state_leases WHERE id = %s", (lease_id,))

    async def prune(self, revocations_older_than: timedelta, leases_older_than: timedelta) -> None:
        await self._conn.execute(
            "DELETE FROM session_revocations WHERE ended_at < now() - %s", (revocations_older_than,)
        )
        await self._conn.execute(
            "DELETE FROM session_state_leases WHERE expires_at < now() - %s", (leases_older_than,)
        )


class FeedingSessionRepository(SessionRepository):
    """SessionRepository that remembers whether its unit of work ended a session, so that
    the unit of work can wait, after its commit, until every server process knows it."""

    ended_any = False

    async def revoke(self, session_id: UUID, reason: str) -> bool:
        ended = await super().revoke(session_id, reason)
        self.ended_any = self.ended_any or ended
        return ended

    async def revoke_all_for_user(
        self, user_id: UUID, reason: str, *, except_session: UUID | None = None
    ) -> int:
        count = await super().revoke_all_for_user(user_id, reason, except_session=except_session)
        self.ended_any = self.ended_any or count > 0
        return count


class SessionListenConnection:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self.revocations = SessionRevocationRepository(conn)

    async def next_seq(self, wait_seconds: float) -> int | None:
        """The highest number notified within `wait_seconds`, or None."""
        return await highest_notified(self._conn, wait_seconds)


class SessionChannel:
    def __init__(self, database_url: str, *, connect_timeout: float) -> None:
        self._url = database_url
        self._connect_timeout = connect_timeout

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[SessionListenConnection]:
        async with listening(self._url, CHANNEL, connect_timeout=self._connect_timeout) as conn:
            yield SessionListenConnection(conn)
