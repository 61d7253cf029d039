"""login_history: every authentication attempt, partitioned by month on login_at."""

from __future__ import annotations

from uuid import UUID

from identity.domain.models import LoginOutcome
from identity.store.rows import Conn


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
    ) -> None:
        await self._conn.execute(
            """
            INSERT INTO login_history (user_id, outcome, ip, user_agent, session_id)
            VALUES (%s, %s, %s, %s, %s)
            """,
            (user_id, outcome.value, ip, user_agent, session_id),
        )
