"""Ended sessions, in every server process's memory, exact across processes; and the feed
that hands them to peers.

The rule, the same as the permission cache's (services/authz_sync.py): once a call that
ends a session has *returned*, the next call with a token of that session is refused on
every server process, and token checks of a live session need no PostgreSQL round trip.

- A trigger numbers every ended session in PostgreSQL (session_revocations, migration
  0006) in its transaction and NOTIFYs the number; numbers commit in order.
- Each process loads every revocation whose tokens could still verify, and holds a lease
  in session_state_leases ("until T I may answer from memory; I have loaded up to N")
  that it can renew only once it has loaded the current number.
- A unit of work that ended a session, after its commit, waits until every live lease has
  acknowledged the current number or lapsed (`settle`; at most one lease time).
- A check that finds the lease lapsed (a renewal late under load) waits for one renewal
  shared by every such check, rather than each reading its session row: under load that
  flood of reads is what would make PostgreSQL late. Without a lease after that
  (PostgreSQL lost) checks read the session row, which fails closed when PostgreSQL does
  not answer.

The feed (`subscribe`) starts from this memory, so it survives a server restart for as long
as the record does (it is pruned only once no token of a session can verify), and sends a
heartbeat only while the lease is valid: a peer that stops hearing them knows its copy may
be stale."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import structlog

from identity.domain.clock import Clock
from identity.domain.errors import BackendUnavailable
from identity.services.acknowledgement import until_acknowledged
from identity.services.single_flight import SingleFlight
from identity.store.database import Database
from identity.store.session_revocations import (
    Revocation,
    SessionChannel,
    SessionListenConnection,
    SessionRevocationRepository,
)

log = structlog.get_logger("identity.ended_sessions")

_RECONNECT_DELAY = 0.5
_MAX_RECONNECT_DELAY = 5.0
_STALE_LEASE_RETENTION = timedelta(hours=1)
# Revocations are kept in memory (and in PostgreSQL) this long past the moment their
# tokens stop verifying, for clock differences between hosts.
_RETENTION_MARGIN = timedelta(minutes=5)
# How often the in-memory record drops what no token can need any more (a full scan).
_PRUNE_EVERY = 30.0


@dataclass(frozen=True)
class EndedSession:
    seq: int
    session_id: UUID
    user_id: UUID
    ended_at: datetime
    # No access token of the session verifies after this (its expiry plus the skew).
    tokens_valid_until: datetime
    reason: str


@dataclass(frozen=True)
class SessionFacts:
    """What never changes about a live session: enough to check a token without its row."""

    user_id: UUID
    expires_at: datetime


@dataclass(frozen=True)
class FeedBatch:
    sessions: list[EndedSession]
    cursor: int
    # None: the record is not known to be current (no valid lease); send no heartbeat.
    current_at: datetime | None


class EndedSessions:
    def __init__(
        self,
        db: Database,
        channel: SessionChannel,
        clock: Clock,
        *,
        lease_ttl: timedelta,
        tokens_live: timedelta,
        facts_size: int = 100_000,
    ) -> None:
        self._db = db
        self._channel = channel
        self._clock = clock
        self._ttl = lease_ttl
        self._ttl_seconds = lease_ttl.total_seconds()
        self._margin = max(0.05, self._ttl_seconds * 0.1)
        self._renew_every = self._ttl_seconds / 3
        # Access-token lifetime plus skew: how long after its end a session matters.
        self._tokens_live = tokens_live
        self.lease_id = uuid.uuid4()
        self._host = socket.gethostname()[:128]
        self.applied = -1
        self.lease_until = 0.0
        self._ended: dict[UUID, EndedSession] = {}
        self._facts: OrderedDict[UUID, SessionFacts] = OrderedDict()
        self._facts_size = facts_size
        # None in a queue ends that feed (shutdown).
        self._subscribers: set[asyncio.Queue[list[EndedSession] | None]] = set()
        self._closing = False
        self._loading = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        # True while the notification connection is up: only then may a check renew the
        # lease itself (see revalidate).
        self._listening = False
        self._revalidation = SingleFlight(self._renew_if_lapsed)

    # -- the check path: memory only --------------------------------------------------

    def trusted(self) -> bool:
        return self._clock.monotonic() < self.lease_until

    async def revalidate(self) -> bool:
        """For a check that found the lease lapsed: one renewal shared by every such check.
        Only while listening: a lease held without notifications would hear of no end
        and make every call that ends a session wait for it to lapse. Raises
        BackendUnavailable if PostgreSQL does not answer."""

        if not self._listening:
            return False
        await self._revalidation()
        return self.trusted()

    async def _renew_if_lapsed(self) -> None:
        async with self._loading:
            if self.trusted():  # renewed by the background loop meanwhile
                return
        await self._renew()

    def is_ended(self, session_id: UUID) -> bool:
        return session_id in self._ended

    def facts(self, session_id: UUID) -> SessionFacts | None:
        return self._facts.get(session_id)

    def remember(self, session_id: UUID, facts: SessionFacts) -> None:
        """A session just read live from PostgreSQL; its later end arrives as a revocation."""
        if session_id in self._ended:
            return
        self._facts[session_id] = facts
        if len(self._facts) > self._facts_size:
            self._facts.popitem(last=False)

    # -- loading ----------------------------------------------------------------------

    def _apply(self, rows: list[Revocation]) -> None:
        fresh: list[EndedSession] = []
        for row in rows:
            if row.seq <= self.applied:
                continue
            ended = EndedSession(
                row.seq,
                row.session_id,
                row.user_id,
                row.ended_at,
                row.ended_at + self._tokens_live,
                row.reason,
            )
            self._ended[row.session_id] = ended
            self._facts.pop(row.session_id, None)
            self.applied = row.seq
            fresh.append(ended)
        if fresh:
            for queue in self._subscribers:
                queue.put_nowait(fresh)

    async def _catch_up(self, repo: SessionRevocationRepository) -> None:
        """Loads every revocation after the applied number. The numbers visible form a
        prefix (they commit in order), so after this the record is complete up to
        `current` as read first."""
        current = await repo.current()
        while True:
            rows = await repo.after(self.applied, ended_since=self._tokens_live + _RETENTION_MARGIN)
            self._apply(rows)
            if len(rows) < 10000:
                break
        # Revocations too old to matter are skipped, not waited for.
        self.applied = max(self.applied, current)

    async def _renew(self, listen: SessionListenConnection | None = None) -> None:
        async with self._loading:
            for _ in range(5):
                started = self._clock.monotonic()
                if listen is None:
                    async with self._db.reader() as uow:
                        _, renewed = await self._renew_once(uow.session_revocations)
                else:
                    _, renewed = await self._renew_once(listen.revocations)
                if renewed:
                    self.lease_until = max(self.lease_until, started + self._ttl_seconds - self._margin)
                    self._ready.set()
                    return
                if listen is None:
                    async with self._db.reader() as uow:
                        await self._catch_up(uow.session_revocations)
                else:
                    await self._catch_up(listen.revocations)
            self.lease_until = 0.0

    async def _renew_once(self, repo: SessionRevocationRepository) -> tuple[int, bool]:
        return await repo.renew(self.lease_id, self.applied, self._ttl, self._host, os.getpid())

    def _prune_memory(self) -> None:
        horizon = self._clock.now() - _RETENTION_MARGIN
        for session_id in [s for s, e in self._ended.items() if e.tokens_valid_until < horizon]:
            del self._ended[session_id]

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, ready_timeout: float = 5.0) -> None:
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="ended-sessions")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), ready_timeout)

    async def stop(self) -> None:
        self.lease_until = 0.0
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(BackendUnavailable):
            async with self._db.reader() as uow:
                await uow.session_revocations.release(self.lease_id)

    def close_feeds(self) -> None:
        """Ends every feed stream (at shutdown, so that draining does not wait for them;
        the peers reconnect to another process and resume from their cursors)."""
        self._closing = True
        for queue in self._subscribers:
            queue.put_nowait(None)

    async def settle(self) -> None:
        """After the commit of a unit of work that ended sessions: returns once no server
        process can accept a token of them (every live lease has loaded the current
        number, or lapsed)."""
        try:
            async with self._db.reader() as uow:
                seq = await uow.session_revocations.current()
        except BackendUnavailable:
            seq = None
        deadline = self._clock.monotonic() + self._ttl_seconds + self._margin
        if self._task is not None:
            with contextlib.suppress(BackendUnavailable):
                await self._renew()

        async def unacknowledged() -> int | None:
            if seq is None:
                return None
            async with self._db.reader() as uow:
                return await uow.session_revocations.pending(seq)

        await until_acknowledged(unacknowledged, deadline, self._clock)

    async def _run(self) -> None:
        with contextlib.suppress(BackendUnavailable):
            async with self._db.transaction() as uow:
                await uow.session_revocations.prune(
                    self._tokens_live + _RETENTION_MARGIN * 2, _STALE_LEASE_RETENTION
                )
        delay = _RECONNECT_DELAY
        while True:
            try:
                async with self._channel.listen() as connection:
                    await self._renew(connection)
                    delay = _RECONNECT_DELAY
                    self._listening = True
                    await self._follow(connection)
            except asyncio.CancelledError:
                self._listening = False
                raise
            except BackendUnavailable as exc:
                self._listening = False
                self.lease_until = 0.0
                if delay == _RECONNECT_DELAY:
                    log.warning("ended_sessions_lost", cause=type(exc.__cause__).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_RECONNECT_DELAY)

    async def _follow(self, connection: SessionListenConnection) -> None:
        next_renewal = self._clock.monotonic() + self._renew_every
        next_prune = self._clock.monotonic() + _PRUNE_EVERY
        while True:
            latest = await connection.next_seq(next_renewal - self._clock.monotonic())
            if latest is None and self._clock.monotonic() < next_renewal:
                continue
            if latest is not None and latest <= self.applied:
                continue
            await self._renew(connection)
            if self._clock.monotonic() >= next_prune:
                self._prune_memory()
                next_prune = self._clock.monotonic() + _PRUNE_EVERY
            next_renewal = self._clock.monotonic() + self._renew_every

    # -- the feed ---------------------------------------------------------------------

    async def subscribe(self, after: int, heartbeat: float) -> AsyncIterator[FeedBatch]:
        """The relevant ended sessions numbered above `after` (all of them for 0), then each
        new one as it is loaded; a heartbeat every `heartbeat` seconds while the lease is
        valid."""
        await self._ready.wait()
        if self._closing:
            return
        queue: asyncio.Queue[list[EndedSession] | None] = asyncio.Queue()
        # No await between the snapshot and the registration: nothing falls between them.
        backlog = sorted((e for e in self._ended.values() if e.seq > after), key=lambda e: e.seq)
        self._subscribers.add(queue)
        try:
            cursor = max(after, self.applied)
            yield FeedBatch(backlog, cursor, self._clock.now() if self.trusted() else None)
            while True:
                try:
                    received = await asyncio.wait_for(queue.get(), heartbeat)
                except TimeoutError:
                    received = []
                if received is None:
                    return
                batch = received
                batch = [e for e in batch if e.seq > after]
                if batch:
                    cursor = max(cursor, batch[-1].seq)
                if queue.empty():
                    # Everything loaded so far has been sent: the cursor may move past
                    # numbers that were skipped as too old to matter.
                    cursor = max(cursor, self.applied)
                if batch or self.trusted():
                    yield FeedBatch(batch, cursor, self._clock.now() if self.trusted() else None)
        finally:
            self._subscribers.discard(queue)
