"""TOTP factors and the per-account guard against guessing, on the same row: the
guard is durable and every server process shares it. Times are always passed in
(the service's clock), never read from the database's."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from identity.domain.mfa import TotpFactor
from identity.store.rows import Conn, Row


def _factor(row: Row) -> TotpFactor:
    return TotpFactor(
        user_id=row["user_id"],
        secret_encrypted=bytes(row["secret_encrypted"]),
        created_at=row["created_at"],
        confirmed_at=row["confirmed_at"],
        setup_expires_at=row["setup_expires_at"],
        last_used_step=row["last_used_step"],
        window_started_at=row["window_started_at"],
        window_failures=row["window_failures"],
        consecutive_failures=row["consecutive_failures"],
        locked_at=row["locked_at"],
    )


# Whether the failure window that the row remembers is over at %(now)s.
_WINDOW_OVER = "(window_started_at IS NULL OR window_started_at <= %(now)s - %(window)s)"


class TotpFactorRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def get(self, user_id: UUID) -> TotpFactor | None:
        cur = await self._conn.execute("SELECT * FROM totp_factors WHERE user_id = %s", (user_id,))
        row = await cur.fetchone()
        return None if row is None else _factor(row)

    async def get_for_update(self, user_id: UUID) -> TotpFactor | None:
        cur = await self._conn.execute("SELECT * FROM totp_factors WHERE user_id = %s FOR UPDATE", (user_id,))
        row = await cur.fetchone()
        return None if row is None else _factor(row)

    async def put_pending(
        self, user_id: UUID, secret_encrypted: bytes, *, now: datetime, expires_at: datetime
    ) -> bool:
        """Stores a new pending secret, replacing any earlier pending one. False when
        the factor is active (a setup never replaces an active secret)."""
        cur = await self._conn.execute(
            """
            INSERT INTO totp_factors (user_id, secret_encrypted, created_at, setup_expires_at)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (user_id) DO UPDATE
               SET secret_encrypted = EXCLUDED.secret_encrypted, created_at = EXCLUDED.created_at,
                   setup_expires_at = EXCLUDED.setup_expires_at, last_used_step = 0,
                   consecutive_failures = 0
             WHERE totp_factors.confirmed_at IS NULL
            RETURNING user_id
            """,
            (user_id, secret_encrypted, now, expires_at),
        )
        return await cur.fetchone() is not None

    async def reserve_confirm_attempt(
        self, user_id: UUID, *, now: datetime, max_failures: int
    ) -> TotpFactor | None:
        """Counts one wrong code on a pending setup before the code is checked (confirm()
        gives it back). None when nothing is pending, it expired, or it took its wrong codes."""
        cur = await self._conn.execute(
            """
            UPDATE totp_factors SET consecutive_failures = consecutive_failures + 1
             WHERE user_id = %s AND confirmed_at IS NULL AND setup_expires_at > %s
               AND consecutive_failures < %s
            RETURNING *
            """,
            (user_id, now, max_failures),
        )
        row = await cur.fetchone()
        return None if row is None else _factor(row)

    async def confirm(self, user_id: UUID, step: int, now: datetime) -> bool:
        """Activates a pending, unexpired secret with its first accepted step."""
        cur = await self._conn.execute(
            """
            UPDATE totp_factors
               SET confirmed_at = %(now)s, setup_expires_at = NULL, last_used_step = %(step)s,
                   window_started_at = NULL, window_failures = 0, consecutive_failures = 0, locked_at = NULL
             WHERE user_id = %(user)s AND confirmed_at IS NULL AND setup_expires_at > %(now)s
               AND last_used_step < %(step)s
            RETURNING user_id
            """,
            {"user": user_id, "now": now, "step": step},
        )
        return await cur.fetchone() is not None

    async def delete(self, user_id: UUID) -> bool:
        cur = await self._conn.execute("DELETE FROM totp_factors WHERE user_id = %s", (user_id,))
        return cur.rowcount == 1

    async def reserve_attempt(
        self, user_id: UUID, *, now: datetime, window: timedelta, per_window: int, lock_threshold: int
    ) -> TotpFactor | None:
        """Counts one wrong code *before* the code is checked (a correct one gives it back),
        so parallel calls cannot check more codes than the limits allow: the row lock
        serialises them and each re-reads the counts. None when the factor is not
        active, is locked, or the account has no attempt left in this window."""
        cur = await self._conn.execute(
            f"""
            UPDATE totp_factors
               SET window_started_at = CASE WHEN {_WINDOW_OVER} THEN %(now)s ELSE window_started_at END,
                   window_failures = CASE WHEN {_WINDOW_OVER} THEN 1 ELSE window_failures + 1 END,
                   consecutive_failures = consecutive_failures + 1
             WHERE user_id = %(user)s AND confirmed_at IS NOT NULL AND locked_at IS NULL
               AND consecutive_failures < %(threshold)s
               AND ({_WINDOW_OVER} OR window_failures < %(per_window)s)
            RETURNING *
            """,  # noqa: S608 - fixed clauses only; every value is a parameter
            {
                "user": user_id,
                "now": now,
                "window": window,
                "per_window": per_window,
                "threshold": lock_threshold,
            },
        )
        row = await cur.fetchone()
        return None if row is None else _factor(row)

    async def accept_step(self, user_id: UUID, step: int) -> bool:
        """The compare-and-set that makes a TOTP step single use: only a step later than
        every step accepted before wins, and of parallel callers with one step exactly
        one does. Gives the reserved attempt back."""
        cur = await self._conn.execute(
            """
            UPDATE totp_factors
               SET last_used_step = %(step)s, consecutive_failures = 0,
                   window_failures = GREATEST(window_failures - 1, 0)
             WHERE user_id = %(user)s AND confirmed_at IS NOT NULL AND last_used_step < %(step)s
            RETURNING user_id
            """,
            {"user": user_id, "step": step},
        )
        return await cur.fetchone() is not None

    async def forgive_attempt(self, user_id: UUID) -> None:
        """A correct recovery code: the reserved attempt was not a wrong code."""
        await self._conn.execute(
            """
            UPDATE totp_factors
               SET consecutive_failures = 0, window_failures = GREATEST(window_failures - 1, 0)
             WHERE user_id = %s
            """,
            (user_id,),
        )

    async def lock_if_over(self, user_id: UUID, *, now: datetime, lock_threshold: int) -> bool:
        """Locks the factor once the consecutive wrong codes reach the threshold; True
        only for the call that locked it."""
        cur = await self._conn.execute(
            """
            UPDATE totp_factors SET locked_at = %s
             WHERE user_id = %s AND locked_at IS NULL AND consecutive_failures >= %s
            RETURNING user_id
            """,
            (now, user_id, lock_threshold),
        )
        return await cur.fetchone() is not None

    async def unlock(self, user_id: UUID) -> None:
        await self._conn.execute(
            """
            UPDATE totp_factors
               SET locked_at = NULL, consecutive_failures = 0, window_failures = 0, window_started_at = NULL
             WHERE user_id = %s
            """,
            (user_id,),
        )
