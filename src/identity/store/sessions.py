"""Sessions and their refresh tokens. PostgreSQL is the record of revocation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from identity.domain.models import Session
from identity.store.rows import Conn, Row, ip_text


def _session(row: Row) -> Session:
    return Session(
        id=row["id"],
        user_id=row["user_id"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
        ip=ip_text(row["ip"]),
        user_agent=row["user_agent"],
        revoked_at=row["revoked_at"],
        revoked_reason=row["revoked_reason"],
    )


@dataclass(frozen=True)
class RefreshTokenState:
    session_id: UUID
    rotated_at: datetime | None


class SessionRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def create(
        self, session_id: UUID, user_id: UUID, expires_at: datetime, ip: str | None, user_agent: str
    ) -> Session:
        cur = await self._conn.execute(
            """
            INSERT INTO sessions (id, user_id, expires_at, ip, user_agent)
            VALUES (%s, %s, %s, %s, %s) RETURNING *
            """,
            (session_id, user_id, expires_at, ip, user_agent),
        )
        row = await cur.fetchone()
        assert row is not None
        return _session(row)

    async def get(self, session_id: UUID) -> Session | None:
        cur = await self._conn.execute("SELECT * FROM sessions WHERE id = %s", (session_id,))
        row = await cur.fetchone()
        return None if row is None else _session(row)

    async def get_for_update(self, session_id: UUID) -> Session | None:
        cur = await self._conn.execute("SELECT * FROM sessions WHERE id = %s FOR UPDATE", (session_id,))
        row = await cur.fetchone()
        return None if row is None else _session(row)

    async def touch(self, session_id: UUID) -> None:
        await self._conn.execute("UPDATE sessions SET last_used_at = now() WHERE id = %s", (session_id,))

    async def revoke(self, session_id: UUID, reason: str) -> bool:
        cur = await self._conn.execute(
            """
            UPDATE sessions SET revoked_at = now(), revoked_reason = %s
            WHERE id = %s AND revoked_at IS NULL
            """,
            (reason, session_id),
        )
        return cur.rowcount == 1

    async def revoke_all_for_user(self, user_id: UUID, reason: str, *, except_session: UUID | None = None) -> int:
        cur = await self._conn.execute(
            """
            UPDATE sessions SET revoked_at = now(), revoked_reason = %s
            WHERE user_id = %s AND revoked_at IS NULL AND id IS DISTINCT FROM %s
            """,
            (reason, user_id, except_session),
        )
        return cur.rowcount

    async def add_refresh_token(self, token_hash: bytes, session_id: UUID) -> None:
        await self._conn.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id) VALUES (%s, %s)", (token_hash, session_id)
        )

    async def rotate_refresh_token(self, token_hash: bytes) -> UUID | None:
        """Marks a live refresh token used. Exactly one of any number of concurrent
        callers gets the session id back: the row lock serialises them and the
        losers re-read rotated_at as set."""
        cur = await self._conn.execute(
            """
            UPDATE refresh_tokens SET rotated_at = now()
            WHERE token_hash = %s AND rotated_at IS NULL
            RETURNING session_id
            """,
            (token_hash,),
        )
        row = await cur.fetchone()
        return None if row is None else row["session_id"]

    async def refresh_token_state(self, token_hash: bytes) -> RefreshTokenState | None:
        cur = await self._conn.execute(
            "SELECT session_id, rotated_at FROM refresh_tokens WHERE token_hash = %s", (token_hash,)
        )
        row = await cur.fetchone()
        return None if row is None else RefreshTokenState(row["session_id"], row["rotated_at"])
