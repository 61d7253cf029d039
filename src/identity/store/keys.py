"""signing_keys: the RS256 key ring (next -> active -> retired)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from identity.store.rows import Conn, Row


@dataclass(frozen=True)
class StoredKey:
    kid: str
    state: str
    private_key_encrypted: bytes
    public_jwk: dict[str, Any]
    created_at: datetime
    activated_at: datetime | None
    publish_until: datetime | None


def _key(row: Row) -> StoredKey:
    return StoredKey(
        kid=row["kid"],
        state=row["state"],
        private_key_encrypted=bytes(row["private_key_encrypted"]),
        public_jwk=row["public_jwk"],
        created_at=row["created_at"],
        activated_at=row["activated_at"],
        publish_until=row["publish_until"],
    )


class SigningKeyRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def lock_ring(self) -> None:
        """Serialises key-ring changes across processes for the current transaction."""
        await self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('identity.signing_keys'))")

    async def published(self, now: datetime) -> list[StoredKey]:
        cur = await self._conn.execute(
            """
            SELECT * FROM signing_keys
            WHERE state IN ('next', 'active') OR publish_until > %s
            ORDER BY created_at DESC
            """,
            (now,),
        )
        return [_key(row) for row in await cur.fetchall()]

    async def all(self) -> list[StoredKey]:
        cur = await self._conn.execute("SELECT * FROM signing_keys ORDER BY created_at DESC")
        return [_key(row) for row in await cur.fetchall()]

    async def insert(
        self, kid: str, state: str, private_key_encrypted: bytes, public_jwk: dict[str, Any]
    ) -> None:
        await self._conn.execute(
            """
            INSERT INTO signing_keys (kid, state, private_key_encrypted, public_jwk, activated_at)
            VALUES (%s, %s, %s, %s, CASE WHEN %s = 'active' THEN now() END)
            """,
            (kid, state, private_key_encrypted, Jsonb(public_jwk), state),
        )

    async def retire_active(self, publish_until: datetime) -> None:
        await self._conn.execute(
            """
            UPDATE signing_keys SET state = 'retired', retired_at = now(), publish_until = %s
            WHERE state = 'active'
            """,
            (publish_until,),
        )

    async def promote_next(self) -> bool:
        cur = await self._conn.execute(
            "UPDATE signing_keys SET state = 'active', activated_at = now() WHERE state = 'next'"
        )
        return cur.rowcount == 1
