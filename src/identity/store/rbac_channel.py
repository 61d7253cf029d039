"""The connection that listens for RBAC version changes (NOTIFY identity_rbac) and
renews this process's cache lease on the same socket.

A connection of its own, outside the pool: LISTEN is per connection, and the lease must
be renewed by the connection that hears the notifications (see services.authz_sync for
the protocol). Driver failures become BackendUnavailable."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg.rows import dict_row

from identity.domain.errors import BackendUnavailable
from identity.store.rbac_leases import RbacLeaseRepository
from identity.store.rows import Conn

CHANNEL = "identity_rbac"


class RbacListenConnection:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self.leases = RbacLeaseRepository(conn)

    async def next_version(self, wait_seconds: float) -> int | None:
        """The highest version notified within `wait_seconds` (returns at the first
        notification), or None when none came."""
        latest: int | None = None
        try:
            async for notice in self._conn.notifies(timeout=max(0.0, wait_seconds), stop_after=1):
                with contextlib.suppress(ValueError):
                    latest = max(latest or 0, int(notice.payload))
        except (psycopg.Error, OSError) as exc:
            raise BackendUnavailable() from exc
        return latest


class RbacChannel:
    def __init__(self, database_url: str, *, connect_timeout: float) -> None:
        self._url = database_url
        self._connect_timeout = max(1, int(connect_timeout))

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[RbacListenConnection]:
        """A connection that is LISTENing already when it is handed over: a write
        committed after the caller's first read through it is sure to be notified."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, row_factory=dict_row, connect_timeout=self._connect_timeout
            )
        except (psycopg.Error, OSError) as exc:
            raise BackendUnavailable() from exc
        try:
            async with conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                yield RbacListenConnection(conn)
        except (psycopg.Error, OSError) as exc:
            raise BackendUnavailable() from exc
