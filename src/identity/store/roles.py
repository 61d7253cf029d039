"""Roles, their permissions, the permission catalogue and user assignments.

Every write here fires a trigger that bumps rbac_version in the same transaction
(migration 0003). Writers take `lock_for_write` first, which serialises RBAC writes
so that escalation checks, in-use checks and the catalogue clean-up see a stable
state."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

import psycopg.errors

from identity.domain.errors import RoleExists
from identity.domain.permissions import (
    WILDCARD,
    GrantRow,
    HeldRole,
    Role,
    RoleAssignment,
    RoleGrants,
    RoleName,
)
from identity.store.rows import Conn, Row

_ROLE_SELECT = """
SELECT r.id, r.name, r.name_canonical, r.description, r.builtin, r.created_at, r.updated_at,
       COALESCE(array_agg(p.name ORDER BY p.name) FILTER (WHERE p.name IS NOT NULL), '{}') AS permissions
FROM roles r
LEFT JOIN role_permissions rp ON rp.role_id = r.id
LEFT JOIN permissions p ON p.id = rp.permission_id
"""

_ASSIGNMENT_SELECT = """
SELECT ur.user_id, ur.role_id, r.name AS role_name, ur.expires_at, ur.created_at
FROM user_roles ur JOIN roles r ON r.id = ur.role_id
"""


def _role(row: Row) -> Role:
    return Role(
        id=row["id"],
        name=row["name"],
        name_canonical=row["name_canonical"],
        description=row["description"],
        permissions=tuple(row["permissions"]),
        builtin=row["builtin"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _assignment(row: Row) -> RoleAssignment:
    return RoleAssignment(
        user_id=row["user_id"],
        role_id=row["role_id"],
        role_name=row["role_name"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
    )


class GrantSnapshot:
    """A user's assignments and the RBAC version, read in one statement (one snapshot)."""

    __slots__ = ("as_of", "disabled", "exists", "rows", "version")

    def __init__(
        self, version: int, as_of: datetime, exists: bool, disabled: bool, rows: list[GrantRow]
    ) -> None:
        self.version = version
        self.as_of = as_of
        self.exists = exists
        self.disabled = disabled
        self.rows = rows


# Every query here that reads rbac_version reads it as a scalar subquery, never as a
# joined table: rbac_version is rarely analysed, and the planner's guess of thousands of
# rows for it once made a one-user read cost 30 ms (JIT compilation).


class HeldRoles:
    """A user's assignments with their roles' permissions, and the RBAC version, read in
    one statement (one snapshot)."""

    __slots__ = ("disabled", "exists", "held", "version")

    def __init__(self, version: int, exists: bool, disabled: bool, held: list[HeldRole]) -> None:
        self.version = version
        self.exists = exists
        self.disabled = disabled
        self.held = held


class RoleRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def lock_for_write(self) -> int:
        """Serialises RBAC writers (and lease renewals, which take a share lock)."""
        cur = await self._conn.execute("SELECT version FROM rbac_version FOR UPDATE")
        row = await cur.fetchone()
        assert row is not None
        return int(row["version"])

    async def version(self) -> int:
        cur = await self._conn.execute("SELECT version FROM rbac_version")
        row = await cur.fetchone()
        assert row is not None
        return int(row["version"])

    async def get(self, role_id: UUID) -> Role | None:
        cur = await self._conn.execute(_ROLE_SELECT + " WHERE r.id = %s GROUP BY r.id", (role_id,))
        row = await cur.fetchone()
        return None if row is None else _role(row)

    async def get_by_name(self, canonical: str) -> Role | None:
        cur = await self._conn.execute(
            _ROLE_SELECT + " WHERE r.name_canonical = %s GROUP BY r.id", (canonical,)
        )
        row = await cur.fetchone()
        return None if row is None else _role(row)

    async def list_page(self, after: str | None, limit: int) -> list[Role]:
        cur = await self._conn.execute(
            _ROLE_SELECT
            + " WHERE %(after)s::text IS NULL OR r.name_canonical > %(after)s"
            + " GROUP BY r.id ORDER BY r.name_canonical LIMIT %(limit)s",
            {"after": after, "limit": limit},
        )
        return [_role(row) for row in await cur.fetchall()]

    async def insert(self, role_id: UUID, name: RoleName, description: str) -> None:
        try:
            async with self._conn.transaction():
                await self._conn.execute(
                    "INSERT INTO roles (id, name, name_canonical, description) VALUES (%s, %s, %s, %s)",
                    (role_id, name.display, name.canonical, description),
                )
        except psycopg.errors.UniqueViolation:
            raise RoleExists() from None

    async def update(self, role_id: UUID, name: RoleName | None, description: str | None) -> None:
        try:
            async with self._conn.transaction():
                await self._conn.execute(
                    """
                    UPDATE roles SET
                        name = COALESCE(%(name)s, name),
                        name_canonical = COALESCE(%(canonical)s, name_canonical),
                        description = COALESCE(%(description)s, description),
                        updated_at = now()
                    WHERE id = %(id)s
                    """,
                    {
                        "id": role_id,
                        "name": name.display if name else None,
                        "canonical": name.canonical if name else None,
                        "description": description,
                    },
                )
        except psycopg.errors.UniqueViolation:
            raise RoleExists() from None

    async def set_permissions(self, role_id: UUID, names: frozenset[str]) -> None:
        wanted = sorted(names)
        await self._conn.execute(
            "INSERT INTO permissions (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
            (wanted,),
        )
        await self._conn.execute(
            """
            DELETE FROM role_permissions rp USING permissions p
            WHERE rp.role_id = %s AND p.id = rp.permission_id AND NOT (p.name = ANY(%s::text[]))
            """,
            (role_id, wanted),
        )
        await self._conn.execute(
            """
            INSERT INTO role_permissions (role_id, permission_id)
            SELECT %s, p.id FROM permissions p WHERE p.name = ANY(%s::text[])
            ON CONFLICT DO NOTHING
            """,
            (role_id, wanted),
        )

    async def delete(self, role_id: UUID) -> bool:
        cur = await self._conn.execute("DELETE FROM roles WHERE id = %s AND NOT builtin", (role_id,))
        return cur.rowcount == 1

    async def live_assignment_count(self, role_id: UUID, now: datetime) -> int:
        cur = await self._conn.execute(
            """
            SELECT count(*) AS n FROM user_roles
            WHERE role_id = %s AND (expires_at IS NULL OR expires_at > %s)
            """,
            (role_id, now),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["n"])

    async def prune_catalogue(self, candidates: Iterable[str]) -> None:
        """The catalogue holds the permissions in use: drop those of `candidates` (what a
        role carried before a change) that no role carries any more. Only those: looking
        at every permission reads all of role_permissions (20 ms at 200k rows)."""
        await self._conn.execute(
            """
            DELETE FROM permissions p
            WHERE p.name = ANY(%s::text[]) AND NOT p.builtin
              AND NOT EXISTS (SELECT 1 FROM role_permissions rp WHERE rp.permission_id = p.id)
            """,
            (sorted(candidates),),
        )

    async def catalogue(self) -> tuple[int, frozenset[str]]:
        """(rbac version, every permission name a check may be granted), in one snapshot."""
        cur = await self._conn.execute(
            """
            SELECT (SELECT version FROM rbac_version) AS version,
                   ARRAY(
                       SELECT p.name FROM permissions p
                       WHERE p.name <> %s
                         AND (p.builtin
                              OR EXISTS (SELECT 1 FROM role_permissions rp WHERE rp.permission_id = p.id))
                   ) AS names
            """,
            (WILDCARD,),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["version"]), frozenset(row["names"])

    async def assign(
        self, user_id: UUID, role_id: UUID, expires_at: datetime | None, granted_by: UUID | None
    ) -> RoleAssignment:
        await self._conn.execute(
            """
            INSERT INTO user_roles (user_id, role_id, expires_at, granted_by) VALUES (%s, %s, %s, %s)
            ON CONFLICT (user_id, role_id) DO UPDATE
                SET expires_at = EXCLUDED.expires_at, granted_by = EXCLUDED.granted_by
            """,
            (user_id, role_id, expires_at, granted_by),
        )
        cur = await self._conn.execute(
            _ASSIGNMENT_SELECT + " WHERE ur.user_id = %s AND ur.role_id = %s", (user_id, role_id)
        )
        row = await cur.fetchone()
        assert row is not None
        return _assignment(row)

    async def revoke(self, user_id: UUID, role_id: UUID) -> bool:
        cur = await self._conn.execute(
            "DELETE FROM user_roles WHERE user_id = %s AND role_id = %s", (user_id, role_id)
        )
        return cur.rowcount == 1

    async def user_assignments(self, user_id: UUID) -> list[RoleAssignment]:
        cur = await self._conn.execute(
            _ASSIGNMENT_SELECT + " WHERE ur.user_id = %s ORDER BY r.name_canonical", (user_id,)
        )
        return [_assignment(row) for row in await cur.fetchall()]

    async def grant_snapshot(self, user_id: UUID, now: datetime) -> GrantSnapshot:
        """Everything a check needs about one user, with the version it is exact for;
        `now` is the time its assignments' expiry is judged at."""
        cur = await self._conn.execute(
            """
            SELECT (SELECT version FROM rbac_version) AS version, u.id IS NOT NULL AS user_exists,
                   u.disabled_at IS NOT NULL AS disabled,
                   r.name AS role_name, ur.expires_at, p.name AS permission
            FROM (SELECT %s::uuid AS id) wanted
            LEFT JOIN users u ON u.id = wanted.id
            LEFT JOIN user_roles ur ON ur.user_id = u.id
            LEFT JOIN roles r ON r.id = ur.role_id
            LEFT JOIN role_permissions rp ON rp.role_id = r.id
            LEFT JOIN permissions p ON p.id = rp.permission_id
            """,
            (user_id,),
        )
        rows = await cur.fetchall()
        first = rows[0]
        return GrantSnapshot(
            version=int(first["version"]),
            as_of=now,
            exists=bool(first["user_exists"]),
            disabled=bool(first["disabled"]),
            rows=[
                GrantRow(row["role_name"], row["expires_at"], row["permission"])
                for row in rows
                if row["role_name"] is not None
            ],
        )

    async def held_roles(self, user_id: UUID) -> HeldRoles:
        """What the permission cache keeps about one user, with the version it is exact
        for: one row per assignment, each with its role's permissions."""
        cur = await self._conn.execute(
            """
            SELECT (SELECT version FROM rbac_version) AS version, u.id IS NOT NULL AS user_exists,
                   u.disabled_at IS NOT NULL AS disabled,
                   r.id AS role_id, r.name AS role_name, ur.expires_at,
                   ARRAY(SELECT (SELECT p.name FROM permissions p WHERE p.id = rp.permission_id)
                         FROM role_permissions rp WHERE rp.role_id = r.id) AS permissions
            FROM (SELECT %s::uuid AS id) wanted
            LEFT JOIN users u ON u.id = wanted.id
            LEFT JOIN user_roles ur ON ur.user_id = u.id
            LEFT JOIN roles r ON r.id = ur.role_id
            """,
            (user_id,),
        )
        rows = await cur.fetchall()
        first = rows[0]
        return HeldRoles(
            version=int(first["version"]),
            exists=bool(first["user_exists"]),
            disabled=bool(first["disabled"]),
            held=[
                HeldRole(
                    RoleGrants(row["role_id"], row["role_name"], tuple(row["permissions"])), row["expires_at"]
                )
                for row in rows
                if row["role_id"] is not None
            ],
        )

    async def role_grants(self, role_ids: list[UUID]) -> tuple[int, list[RoleGrants]]:
        """(rbac version, those of `role_ids` that exist, with their permissions), in one
        snapshot."""
        cur = await self._conn.execute(
            """
            SELECT (SELECT version FROM rbac_version) AS version, r.id AS role_id, r.name AS role_name,
                   ARRAY(SELECT (SELECT p.name FROM permissions p WHERE p.id = rp.permission_id)
                         FROM role_permissions rp WHERE rp.role_id = r.id) AS permissions
            FROM (SELECT 1) one LEFT JOIN roles r ON r.id = ANY(%s)
            """,
            (role_ids,),
        )
        rows = await cur.fetchall()
        return int(rows[0]["version"]), [
            RoleGrants(row["role_id"], row["role_name"], tuple(row["permissions"]))
            for row in rows
            if row["role_id"] is not None
        ]
