"""Users and their password credentials."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import psycopg.errors

from identity.domain.errors import LoginTaken
from identity.domain.models import AttemptSlot, Credentials, User
from identity.store.rows import Conn, Row

_USER_COLUMNS = """
    u.id, u.login, u.login_canonical, u.email, u.created_at, u.disabled_at,
    EXISTS (SELECT 1 FROM totp_factors t WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL) AS mfa_enabled
"""


def _user(row: Row) -> User:
    return User(
        id=row["id"],
        login=row["login"],
        login_canonical=row["login_canonical"],
        email=row["email"],
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
        mfa_enabled=row["mfa_enabled"],
    )


class UserRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def create(
        self, user_id: UUID, login: str, login_canonical: str, email: str | None, password_hash: bytes
    ) -> User:
        try:
            # A savepoint keeps the caller's transaction usable after a unique violation.
            async with self._conn.transaction():
                await self._conn.execute(
                    "INSERT INTO users (id, login, login_canonical, email) VALUES (%s, %s, %s, %s)",
                    (user_id, login, login_canonical, email),
                )
        except psycopg.errors.UniqueViolation:
            raise LoginTaken() from None
        await self._conn.execute(
            "INSERT INTO password_credentials (user_id, password_hash) VALUES (%s, %s)",
            (user_id, password_hash),
        )
        user = await self.get(user_id)
        assert user is not None
        return user

    async def get(self, user_id: UUID) -> User | None:
        cur = await self._conn.execute(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = %s", (user_id,))
        row = await cur.fetchone()
        return None if row is None else _user(row)

    async def get_by_login(self, login_canonical: str) -> User | None:
        cur = await self._conn.execute(
            f"SELECT {_USER_COLUMNS} FROM users u WHERE u.login_canonical = %s", (login_canonical,)
        )
        row = await cur.fetchone()
        return None if row is None else _user(row)

    async def reserve_attempt(
        self,
        *,
        login_canonical: str | None = None,
        user_id: UUID | None = None,
        limit: int,
        now: datetime,
        hold: timedelta,
    ) -> AttemptSlot | None:
        """Reserves one password check on the account, *before* the hash is checked, unless
        its consecutive failures plus the checks already in flight reach `limit`: parallel
        guesses cannot exceed the limit, and correct passwords, which never become failures,
        cannot lock it. A reservation lapses after `hold` (a process that died mid-check).
        The account is named by its login (a login attempt) or by its id (a signed-in
        caller); None when there is no such account."""
        if (login_canonical is None) == (user_id is None):
            raise ValueError("name the account by login or by id, not both")
        where = "u.login_canonical = %(key)s" if user_id is None else "u.id = %(key)s"
        cur = await self._conn.execute(
            f"""
            WITH target AS (
                SELECT u.id, u.failed_logins,
                    CASE WHEN u.login_pending_until > %(now)s THEN u.login_pending ELSE 0 END AS pending
                FROM users u WHERE {where} FOR UPDATE
            ), reserved AS (
                UPDATE users u SET login_pending = t.pending + 1, login_pending_until = %(until)s
                FROM target t
                WHERE u.id = t.id AND t.failed_logins + t.pending < %(limit)s
                RETURNING u.id
            )
            SELECT {_USER_COLUMNS}, t.failed_logins, r.id IS NOT NULL AS reserved,
                (SELECT c.password_hash FROM password_credentials c WHERE c.user_id = u.id) AS password_hash
            FROM target t JOIN users u ON u.id = t.id LEFT JOIN reserved r ON r.id = t.id
            """,
            {
                "key": login_canonical if user_id is None else user_id,
                "now": now,
                "until": now + hold,
                "limit": limit,
            },
        )
        row = await cur.fetchone()
        if row is None:
            return None
        credentials = Credentials(
            user=_user(row), password_hash=bytes(row["password_hash"]), failed_logins=row["failed_logins"]
        )
        return AttemptSlot(credentials, reserved=bool(row["reserved"]))

    async def settle_attempt(self, user_id: UUID, outcome: bool | None) -> int | None:
        """Ends a reservation: a wrong password (False) counts one more consecutive failure,
        a right one (True) resets the count, None (the check did not finish) leaves it.
        Returns the count after it (None: no such account)."""
        cur = await self._conn.execute(
            """
            UPDATE users SET login_pending = GREATEST(login_pending - 1, 0),
                failed_logins = CASE WHEN %(outcome)s::boolean IS NULL THEN failed_logins
                                     WHEN %(outcome)s::boolean THEN 0 ELSE failed_logins + 1 END
            WHERE id = %(id)s
            RETURNING failed_logins
            """,
            {"id": user_id, "outcome": outcome},
        )
        row = await cur.fetchone()
        return None if row is None else int(row["failed_logins"])

    async def failed_logins(self, user_id: UUID) -> int | None:
        """The consecutive failure count (operators' view)."""
        cur = await self._conn.execute("SELECT failed_logins FROM users WHERE id = %s", (user_id,))
        row = await cur.fetchone()
        return None if row is None else int(row["failed_logins"])

    async def set_password(self, user_id: UUID, password_hash: bytes) -> None:
        await self._conn.execute(
            "UPDATE password_credentials SET password_hash = %s, changed_at = now() WHERE user_id = %s",
            (password_hash, user_id),
        )

    async def set_login(self, user_id: UUID, login: str, login_canonical: str) -> None:
        try:
            async with self._conn.transaction():
                await self._conn.execute(
                    "UPDATE users SET login = %s, login_canonical = %s, updated_at = now() WHERE id = %s",
                    (login, login_canonical, user_id),
                )
        except psycopg.errors.UniqueViolation:
            raise LoginTaken() from None

    async def set_disabled(self, user_id: UUID, disabled: bool) -> None:
        await self._conn.execute(
            "UPDATE users SET disabled_at = CASE WHEN %s THEN now() END, updated_at = now() WHERE id = %s",
            (disabled, user_id),
        )

    async def unlock(self, user_id: UUID) -> None:
        await self._conn.execute(
            "UPDATE users SET failed_logins = 0, login_pending = 0 WHERE id = %s", (user_id,)
        )
