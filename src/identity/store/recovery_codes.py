"""Recovery codes, stored as keyed digests; each works once."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from identity.store.rows import Conn


class RecoveryCodeRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def replace(self, user_id: UUID, digests: list[bytes]) -> None:
        """The new set replaces every earlier code, used or not."""
        await self._conn.execute("DELETE FROM recovery_codes WHERE user_id = %s", (user_id,))
        async with self._conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO recovery_codes (user_id, code_hash) VALUES (%s, %s)",
                [(user_id, digest) for digest in digests],
            )

    async def use(self, user_id: UUID, digest: bytes, now: datetime) -> bool:
        """Single use: of parallel callers with one code exactly one gets True."""
        cur = await self._conn.execute(
            """
            UPDATE recovery_codes SET used_at = %s
             WHERE user_id = %s AND code_hash = %s AND used_at IS NULL
            """,
            (now, user_id, digest),
        )
        return cur.rowcount == 1

    async def count_unused(self, user_id: UUID) -> int:
        cur = await self._conn.execute(
            "SELECT count(*) AS n FROM recovery_codes WHERE user_id = %s AND used_at IS NULL", (user_id,)
        )
        row = await cur.fetchone()
        return 0 if row is None else int(row["n"])

    async def delete_for_user(self, user_id: UUID) -> None:
        await self._conn.execute("DELETE FROM recovery_codes WHERE user_id = %s", (user_id,))
