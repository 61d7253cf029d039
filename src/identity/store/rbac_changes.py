"""rbac_changes (migration 0008): what each RBAC version touched, written by the same
triggers that bump rbac_version, read by each server process as it applies versions."""

from __future__ import annotations

from identity.domain.rbac_changes import LoggedChange
from identity.store.rows import Conn


class RbacChangeRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def between(self, after: int, upto: int, limit: int) -> list[LoggedChange]:
        """The rows of versions (after, upto], at most `limit` of them."""
        cur = await self._conn.execute(
            """
            SELECT version, kind, role_id, user_id FROM rbac_changes
            WHERE version > %s AND version <= %s
            LIMIT %s
            """,
            (after, upto, limit),
        )
        return [
            LoggedChange(int(row["version"]), row["kind"], row["role_id"], row["user_id"])
            for row in await cur.fetchall()
        ]
