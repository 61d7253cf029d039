"""Sessions and their refresh tokens. PostgreSQL is the record of revocation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from identity.domain.models import Session
from identity.domain.paging import SessionCursor
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
        amr=tuple(row["amr"]),
        auth_time=row["auth_time"] or row["created_at"],
    )


@dataclass(frozen=True)
class RefreshTokenState:
    session_id: UUID
    rotated_at: datetime | None
    # The token its rotation produced (None while unused, or when it was retired unused).
    replaced_by: bytes | None = None


def _token_state(row: Row) -> RefreshTokenState:
    replaced_by = row["replaced_by"]
    return RefreshTokenState(
        row["session_id"], row["rotated_at"], None if replaced_by is None else bytes(replaced_by)
    )


@dataclass(frozen=True)
class Rotation:
    """What rotate_live_refresh_token found: the session (as before this use), and whether
    the token was rotated (False: the session has ended, nothing changed)."""

    rotated: bool
    session: Session


# A session is live until it is revoked, reaches expires_at, or sits unused for the idle TTL.
_LIVE = """
    revoked_at IS NULL AND expires_at > %(now)s AND last_used_at > %(now)s - %(idle)s
"""


class SessionRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def create(
        self,
        session_id: UUID,
        user_id: UUID,
        *,
        now: datetime,
        expires_at: datetime,
        ip: str | None,
        user_agent: str,
        amr: tuple[str, ...] = ("pwd",),
        auth_time: datetime | None = None,
    ) -> Session:
        cur = await self._conn.execute(
            """
            INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, ip, user_agent,
                                  amr, auth_time)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *
            """,
            (session_id, user_id, now, now, expires_at, ip, user_agent, list(amr), auth_time or now),
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

    async def touch(self, session_id: UUID, now: datetime) -> None:
        await self._conn.execute("UPDATE sessions SET last_used_at = %s WHERE id = %s", (now, session_id))

    async def revoke(self, session_id: UUID, reason: str) -> bool:
        cur = await self._conn.execute(
            """
            UPDATE sessions SET revoked_at = now(), revoked_reason = %s
            WHERE id = %s AND revoked_at IS NULL
            """,
            (reason, session_id),
        )
        return cur.rowcount == 1

    async def revoke_all_for_user(
        self, user_id: UUID, reason: str, *, except_session: UUID | None = None
    ) -> int:
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

    async def rotate_refresh_token(self, token_hash: bytes, now: datetime) -> UUID | None:
        """Marks a live refresh token used. Exactly one of any number of concurrent
        callers gets the session id back: the row lock serialises them and the
        losers re-read rotated_at as set."""
        cur = await self._conn.execute(
            """
            UPDATE refresh_tokens SET rotated_at = %s
            WHERE token_hash = %s AND rotated_at IS NULL
            RETURNING session_id
            """,
            (now, token_hash),
        )
        row = await cur.fetchone()
        return None if row is None else row["session_id"]

    async def rotate_live_refresh_token(
        self, token_hash: bytes, successor_hash: bytes, *, now: datetime, idle_ttl: timedelta
    ) -> Rotation | None:
        """The common refresh in one round trip (migration 0005): a live token of a live
        session is rotated to its successor and the session touched. None when the token
        is unknown or already rotated; the caller then takes the general path."""
        cur = await self._conn.execute(
            "SELECT * FROM rotate_refresh_token(%s, %s, %s, %s)", (token_hash, successor_hash, now, idle_ttl)
        )
        row = await cur.fetchone()
        return None if row is None else Rotation(bool(row["rotated"]), _session(row))

    async def refresh_token_state(self, token_hash: bytes) -> RefreshTokenState | None:
        cur = await self._conn.execute(
            "SELECT session_id, rotated_at, replaced_by FROM refresh_tokens WHERE token_hash = %s",
            (token_hash,),
        )
        row = await cur.fetchone()
        return None if row is None else _token_state(row)

    async def lock_refresh_token(self, token_hash: bytes) -> RefreshTokenState | None:
        """Reads a token under a row lock, so that retries of one rotated token take turns."""
        cur = await self._conn.execute(
            """
            SELECT session_id, rotated_at, replaced_by FROM refresh_tokens
            WHERE token_hash = %s FOR UPDATE
            """,
            (token_hash,),
        )
        row = await cur.fetchone()
        return None if row is None else _token_state(row)

    async def set_successor(self, token_hash: bytes, successor_hash: bytes) -> None:
        await self._conn.execute(
            "UPDATE refresh_tokens SET replaced_by = %s WHERE token_hash = %s", (successor_hash, token_hash)
        )

    async def retire_unused_refresh_token(self, token_hash: bytes, now: datetime) -> bool:
        """Kills a token that was never presented; False if it was used (or is gone) already."""
        cur = await self._conn.execute(
            "UPDATE refresh_tokens SET rotated_at = %s WHERE token_hash = %s AND rotated_at IS NULL",
            (now, token_hash),
        )
        return cur.rowcount == 1

    async def list_live_for_user(
        self,
        user_id: UUID,
        *,
        now: datetime,
        idle_ttl: timedelta,
        limit: int,
        after: SessionCursor | None = None,
    ) -> list[Session]:
        """Live sessions, newest first, starting after the cursor."""
        params: dict[str, object] = {"user_id": user_id, "now": now, "idle": idle_ttl, "limit": limit}
        keyset = ""
        if after is not None:
            keyset = "AND (created_at, id) < (%(after_created)s, %(after_id)s)"
            params.update(after_created=after.created_at, after_id=after.id)
        cur = await self._conn.execute(
            # Only fixed clauses are interpolated; every value travels as a parameter.
            f"""
            SELECT * FROM sessions
            WHERE user_id = %(user_id)s AND {_LIVE} {keyset}
            ORDER BY created_at DESC, id DESC
            LIMIT %(limit)s
            """,  # noqa: S608
            params,
        )
        return [_session(row) for row in await cur.fetchall()]
