"""PostgreSQL LISTEN/NOTIFY on a connection of its own, outside the pool: LISTEN is per
connection, and a process's lease must be renewed by the connection that hears the
notifications (services/authz_sync.py, services/ended_sessions.py). Driver failures
become BackendUnavailable."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg.rows import dict_row

from identity.domain.errors import BackendUnavailable
from identity.store.rows import Conn


@asynccontextmanager
async def listening(database_url: str, channel: str, *, connect_timeout: float) -> AsyncIterator[Conn]:
    """A connection that is LISTENing on `channel` already when it is handed over: a write
    committed after the caller's first read through it is sure to be notified."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row, connect_timeout=max(1, int(connect_timeout))
        )
    except (psycopg.Error, OSError) as exc:
        raise BackendUnavailable() from exc
    try:
        async with conn:
            await conn.execute(f"LISTEN {channel}")
            yield conn
    except (psycopg.Error, OSError) as exc:
        raise BackendUnavailable() from exc


async def highest_notified(conn: Conn, wait_seconds: float) -> int | None:
    """The highest number notified within `wait_seconds` (returns at the first
    notification), or None when none came."""
    latest: int | None = None
    try:
        async for notice in conn.notifies(timeout=max(0.0, wait_seconds), stop_after=1):
            with contextlib.suppress(ValueError):
                latest = max(latest or 0, int(notice.payload))
    except (psycopg.Error, OSError) as exc:
        raise BackendUnavailable() from exc
    return latest
