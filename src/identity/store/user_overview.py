"""What an operator sees of one account at a glance: the lockout counter and the MFA
state, read from users, totp_factors and recovery_codes."""

from __future__ import annotations

from uuid import UUID

from identity.domain.models import AccountFacts
from identity.store.rows import Conn


class UserOverviewRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def facts(self, user_id: UUID) -> AccountFacts | None:
        cur = await self._conn.execute(
            """
            SELECT u.failed_logins,
                   CASE WHEN t.user_id IS NULL THEN 'off'
                        WHEN t.confirmed_at IS NULL THEN 'pending'
                        ELSE 'on' END AS mfa_state,
                   (SELECT count(*) FROM recovery_codes r
                    WHERE r.user_id = u.id AND r.used_at IS NULL) AS recovery_codes_left,
                   t.locked_at AS mfa_locked_at
            FROM users u LEFT JOIN totp_factors t ON t.user_id = u.id
            WHERE u.id = %s
            """,
            (user_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        return AccountFacts(
            int(row["failed_logins"]),
            str(row["mfa_state"]),
            int(row["recovery_codes_left"]),
            row["mfa_locked_at"],
        )
