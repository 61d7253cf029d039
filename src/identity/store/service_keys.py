"""service_keys: credentials of peer services for the check RPCs, stored as SHA-256
digests of 256-bit secrets. Several live keys per name allow rotation."""

from __future__ import annotations

from uuid import UUID

from identity.domain.permissions import ServiceKey
from identity.store.rows import Conn, Row


def _key(row: Row) -> ServiceKey:
    return ServiceKey(
        id=row["id"], name=row["name"], created_at=row["created_at"], revoked_at=row["revoked_at"]
    )


class ServiceKeyRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def insert(self, key_id: UUID, name: str, key_hash: bytes) -> ServiceKey:
        cur = await self._conn.execute(
            "INSERT INTO service_keys (id, name, key_hash) VALUES (%s, %s, %s) RETURNING *",
            (key_id, name, key_hash),
        )
        row = await cur.fetchone()
        assert row is not None
        return _key(row)

    async def list(self, name: str | None) -> list[ServiceKey]:
        cur = await self._conn.execute(
            """
            SELECT * FROM service_keys WHERE %(name)s::text IS NULL OR name = %(name)s
            ORDER BY name, created_at, id
            """,
            {"name": name},
        )
        return [_key(row) for row in await cur.fetchall()]

    async def revoke(self, name: str, key_id: UUID | None) -> int:
        cur = await self._conn.execute(
            """
            UPDATE service_keys SET revoked_at = now()
            WHERE name = %(name)s AND revoked_at IS NULL AND (%(id)s::uuid IS NULL OR id = %(id)s)
            """,
            {"name": name, "id": key_id},
        )
        return cur.rowcount

    async def find_live(self, key_hash: bytes) -> tuple[int, ServiceKey | None]:
        """(rbac version, the live key with this digest or None), in one snapshot."""
        cur = await self._conn.execute(
            """
            SELECT v.version, k.id, k.name, k.created_at, k.revoked_at
            FROM rbac_version v
            LEFT JOIN service_keys k ON k.key_hash = %s AND k.revoked_at IS NULL
            """,
            (key_hash,),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["version"]), None if row["id"] is None else _key(row)
