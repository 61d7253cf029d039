"""PostgreSQL access: one async pool, units of work on top of it.

Connections are autocommit: a single read costs one round trip, and every write
happens inside an explicit transaction that rolls back unless the block completes.
Driver failures become BackendUnavailable, so every caller fails closed.

Faults are bounded in time:

- connecting gives up after `connect_timeout`; one unit of work (waiting for its
  connection included) after `statement_timeout`, which is also PostgreSQL's own
  statement_timeout. A server that is alive cancels a slow statement itself; one that
  hangs (stopped, socket open) cannot, so the unit is cut here and its connection
  closed (a cancel request to a hung server would hang too);
- after a connection-level failure the database is *known down*: every unit fails at
  once, without waiting for the pool, while a probe connects afresh every
  `probe_interval`. When the probe gets an answer, the pool's idle connections are
  checked (those that died with the server are dropped) and units run again;
- what only *may* mean a server gone (a statement cut by our bound, a health check with
  no answer in time) is settled by one fresh connection of its own:
  on a saturated machine a live server can answer late, and calling it down would fail
  every call of the process for a probe interval where only the slow ones had to fail."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import structlog
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from identity.domain.errors import BackendUnavailable
from identity.domain.observer import NOOP, Observer
from identity.store.uow import UnitOfWork

Connection = psycopg.AsyncConnection[dict[str, object]]
log = structlog.get_logger("identity.db")

# SQLSTATEs of a server that is going away or refusing connections (beyond class 08).
_GONE_STATES = frozenset({"57P01", "57P02", "57P03"})
PING_TIMEOUT_SECONDS = 1.5


class _Connection(psycopg.AsyncConnection[dict[str, object]]):
    """Interrupting a query (our timeout) closes the connection instead of sending the
    server a cancel request: a hung server would leave that request, and the caller,
    waiting for seconds. The pool then drops the closed connection."""

    async def _try_cancel(self, *, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (the overridden signature)
        self.pgconn.finish()


def _connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError | PoolTimeout | psycopg.InterfaceError):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _GONE_STATES


class Database:
    def __init__(
        self,
        url: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        timeout: float = 5.0,
        connect_timeout: float = 2.0,
        statement_timeout: float | None = None,
        probe_interval: float = 0.5,
        observer: Observer = NOOP,
    ) -> None:
        self._observer = observer
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": max(1, round(connect_timeout)),
        }
        if statement_timeout:
            kwargs["options"] = f"-c statement_timeout={int(statement_timeout * 1000)}"
        self._url = url
        self._kwargs = kwargs
        self._statement_timeout = statement_timeout or None
        self._probe_interval = probe_interval
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            kwargs=kwargs,
            connection_class=_Connection,
            name="identity",
        )
        self._down = False
        self._probe: asyncio.Task[None] | None = None
        self._suspicion: asyncio.Task[None] | None = None
        # Called after the commit of a unit of work that ended a session: returns once
        # every server process refuses that session's tokens (services/ended_sessions.py).
        self.after_sessions_ended: Callable[[], Awaitable[None]] | None = None

    @property
    def known_down(self) -> bool:
        return self._down

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        for task in (self._probe, self._suspicion):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._pool.close()

    def _mark_down(self, exc: BaseException) -> None:
        if self._down:
            return
        self._down = True
        log.warning("database_down", cause=type(exc).__name__)
        self._probe = asyncio.create_task(self._probe_until_up())

    async def _answers(self) -> bool:
        """One fresh connection (outside the pool) and one round trip, bounded."""
        try:
            async with asyncio.timeout(self._kwargs["connect_timeout"] + PING_TIMEOUT_SECONDS):
                conn = await _Connection.connect(self._url, **self._kwargs)
                async with conn:
                    await conn.execute("SELECT 1")
        except (OSError, TimeoutError, psycopg.Error):
            return False
        return True

    def _suspect(self, exc: BaseException) -> None:
        """Something that may mean the server is gone: one check of its own decides,
        in the background (the call that saw it has failed already)."""
        if self._down or (self._suspicion is not None and not self._suspicion.done()):
            return
        self._suspicion = asyncio.create_task(self._settle_suspicion(exc))

    async def _settle_suspicion(self, exc: BaseException) -> None:
        if not await self._answers():
            self._mark_down(exc)

    async def _probe_until_up(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval)
            if not await self._answers():
                continue
            # Idle connections that died with the server are dropped before use.
            with contextlib.suppress(OSError, TimeoutError, psycopg.Error):
                async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                    await self._pool.check()
            self._down = False
            log.info("database_up")
            return

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        if self._down:
            raise BackendUnavailable()
        acquired = False
        try:
            async with asyncio.timeout(self._statement_timeout), self._pool.connection() as conn:
                acquired = True
                yield conn
        except (TimeoutError, psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            if not acquired and isinstance(exc, TimeoutError | PoolTimeout):
                # Waiting too long for a pooled connection is contention (a saturated
                # process, a full pool), not a server gone: that call fails, the rest go on.
                self._observer.db_pool_timeout()
            elif isinstance(exc, TimeoutError):
                # A statement cut by our bound: a hung server, or a live one answering late.
                self._suspect(exc)
            elif _connection_lost(exc):
                # A stopped server is noticed at once; a hung one also by the health check.
                self._mark_down(exc)
            raise BackendUnavailable() from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        """A read-write unit of work: commits when the block ends, rolls back on error."""
        async with self._connection() as conn:
            uow = UnitOfWork(conn)
            async with conn.transaction():
                yield uow
        if uow.sessions.ended_any and self.after_sessions_ended is not None:
            await self.after_sessions_ended()

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[UnitOfWork]:
        """Autocommit statements, for reads that need no snapshot across queries."""
        async with self._connection() as conn:
            yield UnitOfWork(conn)

    def pool_stats(self) -> dict[str, int]:
        """psycopg_pool's counters (pool_size, pool_available, requests_waiting,
        requests_errors, ...), for metrics."""
        return self._pool.get_stats()

    async def ping(self) -> bool:
        """Health: false at once while known down; otherwise one round trip, bounded."""
        if self._down:
            return False
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS), self._pool.connection() as conn:
                await conn.execute("SELECT 1")
            return True
        except (TimeoutError, PoolTimeout) as exc:
            # Every pooled connection busy, or a live server answering late on a saturated
            # machine, or a hung server: a fresh connection of its own tells them apart.
            if await self._answers():
                return True
            self._mark_down(exc)
            return False
        except psycopg.Error as exc:
            self._mark_down(exc)
            return False
