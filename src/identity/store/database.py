"""PostgreSQL access: one async pool, units of work on top of it.

Connections are autocommit: a single read costs one round trip, and every write
happens inside an explicit transaction that rolls back unless the block completes.
Driver failures become BackendUnavailable, so every caller fails closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from identity.domain.errors import BackendUnavailable
from identity.store.uow import UnitOfWork

Connection = psycopg.AsyncConnection[dict[str, object]]


class Database:
    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 10, timeout: float = 5.0) -> None:
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": max(1, int(timeout))},
            name="identity",
        )
        # Called after the commit of a unit of work that ended a session: returns once
        # every server process refuses that session's tokens (services/ended_sessions.py).
        self.after_sessions_ended: Callable[[], Awaitable[None]] | None = None

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise BackendUnavailable() from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        """A read-write unit of work: commits when the block ends, rolls back on error."""
        async with self._connection() as conn:
            uow = UnitOfWork(conn)
            try:
                async with conn.transaction():
                    yield uow
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise BackendUnavailable() from exc
        if uow.sessions.ended_any and self.after_sessions_ended is not None:
            await self.after_sessions_ended()

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[UnitOfWork]:
        """Autocommit statements, for reads that need no snapshot across queries."""
        async with self._connection() as conn:
            try:
                yield UnitOfWork(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise BackendUnavailable() from exc

    async def ping(self) -> bool:
        try:
            async with self._connection() as conn:
                await conn.execute("SELECT 1")
            return True
        except BackendUnavailable:
            return False
