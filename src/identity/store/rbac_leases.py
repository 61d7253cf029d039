"""rbac_cache_leases: which server processes may answer checks from their cache,
until when (PostgreSQL's clock), and which RBAC version each has applied.

See identity.services.authz_sync for the protocol these statements implement."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from identity.store.rows import Conn


class RbacLeaseRepository:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def renew(
        self, lease_id: UUID, applied_version: int, ttl: timedelta, host: str, pid: int
    ) -> tuple[int, bool]:
        """Extends the lease only if the process has applied the current version; one
        statement, so one round trip (the connection is in autocommit mode).

        The share lock on rbac_version makes a renewal either commit before a writer
        bumps the version (so that writer sees this lease and waits for its
        acknowledgement) or wait for the writer and see its version: in READ COMMITTED a
        locking read that waited returns the row as the writer committed it.
        Returns (current version, renewed)."""
        cur = await self._conn.execute(
            """
            WITH current AS (SELECT version FROM rbac_version FOR SHARE),
            renewed AS (
                INSERT INTO rbac_cache_leases (id, acked_version, expires_at, host, pid)
                SELECT %(id)s, %(version)s, now() + %(ttl)s, %(host)s, %(pid)s
                FROM current WHERE current.version <= %(version)s
                ON CONFLICT (id) DO UPDATE
                    SET acked_version = EXCLUDED.acked_version, expires_at = EXCLUDED.expires_at
                RETURNING 1
            )
            SELECT current.version, EXISTS (SELECT 1 FROM renewed) AS renewed FROM current
            """,
            {"id": lease_id, "version": applied_version, "ttl": ttl, "host": host, "pid": pid},
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["version"]), bool(row["renewed"])

    async def pending(self, version: int) -> int:
        """Live leases that have not yet applied `version` (clock_timestamp: now, not
        the statement's start)."""
        cur = await self._conn.execute(
            """
            SELECT count(*) AS n FROM rbac_cache_leases
            WHERE acked_version < %s AND expires_at > clock_timestamp()
            """,
            (version,),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["n"])

    async def release(self, lease_id: UUID) -> None:
        await self._conn.execute("DELETE FROM rbac_cache_leases WHERE id = %s", (lease_id,))

    async def prune(self, older_than: timedelta) -> None:
        await self._conn.execute("DELETE FROM rbac_cache_leases WHERE expires_at < now() - %s", (older_than,))
