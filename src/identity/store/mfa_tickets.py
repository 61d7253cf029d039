"""MFA tickets: what a client holds between the password and the second factor.
Only a SHA-256 digest of a ticket is stored."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from identity.domain.mfa import MfaTicket
from identity.store.rows import Conn, Row


def _ticket(row: Row) -> MfaTicket:
    return MfaTicket(
        user_id=row["user_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        failures=row["failures"],
        password_at=row["password_at"] or row["created_at"],
    )


class MfaTicketRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def create(
        self,
        ticket_hash: bytes,
        user_id: UUID,
        *,
        now: datetime,
        expires_at: datetime,
        ip: str | None,
        user_agent: str,
    ) -> None:
        await self._conn.execute(
            """
            INSERT INTO mfa_tickets
                (ticket_hash, user_id, created_at, expires_at, ip, user_agent, password_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            """,
            (ticket_hash, user_id, now, expires_at, ip, user_agent, now),
        )

    async def get(self, ticket_hash: bytes) -> MfaTicket | None:
        cur = await self._conn.execute("SELECT * FROM mfa_tickets WHERE ticket_hash = %s", (ticket_hash,))
        row = await cur.fetchone()
        return None if row is None else _ticket(row)

    async def reserve_attempt(
        self, ticket_hash: bytes, *, now: datetime, max_failures: int
    ) -> MfaTicket | None:
        """Counts one wrong code on a live ticket before the code is checked (a correct
        code uses the ticket up instead). None when the ticket is unknown, used,
        expired or out of attempts."""
        cur = await self._conn.execute(
            """
            UPDATE mfa_tickets SET failures = failures + 1
             WHERE ticket_hash = %s AND used_at IS NULL AND expires_at > %s AND failures < %s
            RETURNING *
            """,
            (ticket_hash, now, max_failures),
        )
        row = await cur.fetchone()
        return None if row is None else _ticket(row)

    async def use(self, ticket_hash: bytes, now: datetime) -> bool:
        """Single use: of parallel callers exactly one gets True."""
        cur = await self._conn.execute(
            """
            UPDATE mfa_tickets SET used_at = %s, failures = GREATEST(failures - 1, 0)
             WHERE ticket_hash = %s AND used_at IS NULL
            """,
            (now, ticket_hash),
        )
        return cur.rowcount == 1

    async def purge_for_user(self, user_id: UUID, now: datetime) -> None:
        """Drops a user's tickets that can no longer be used."""
        await self._conn.execute(
            "DELETE FROM mfa_tickets WHERE user_id = %s AND (used_at IS NOT NULL OR expires_at <= %s)",
            (user_id, now),
        )

    async def delete_for_user(self, user_id: UUID) -> None:
        await self._conn.execute("DELETE FROM mfa_tickets WHERE user_id = %s", (user_id,))
