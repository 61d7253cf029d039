"""The connection that listens for RBAC version changes (NOTIFY identity_rbac), reads
what they touched and renews this process's cache lease on the same socket
(services/authz_sync.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from identity.store.notifications import highest_notified, listening
from identity.store.rbac_changes import RbacChangeRepository
from identity.store.rbac_leases import RbacLeaseRepository
from identity.store.rows import Conn

CHANNEL = "identity_rbac"


class RbacListenConnection:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self.leases = RbacLeaseRepository(conn)
        self.changes = RbacChangeRepository(conn)

    async def next_version(self, wait_seconds: float) -> int | None:
        """The highest version notified within `wait_seconds`, or None."""
        return await highest_notified(self._conn, wait_seconds)


class RbacChannel:
    def __init__(self, database_url: str, *, connect_timeout: float) -> None:
        self._url = database_url
        self._connect_timeout = connect_timeout

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[RbacListenConnection]:
        async with listening(self._url, CHANNEL, connect_timeout=self._connect_timeout) as conn:
            yield RbacListenConnection(conn)
