"""Exact invalidation of the in-process permission caches, across processes, with no
round trip on the check path.

The rule to keep: once a write that changes anyone's permissions has *returned*, the
next check on any server process sees it. Checks must not query PostgreSQL (nor
Redis) in the common case, so each process answers from memory and the burden is
put on the rare writer instead:

- Every RBAC write bumps `rbac_version` in its transaction and NOTIFYs the new value
  (triggers, migration 0003).
- Each server process holds a *lease* in `rbac_cache_leases`: "until T (PostgreSQL's
  clock) I may answer from my cache; I have applied version A". A process trusts its
  cache only while its lease is valid by its own clock, measured conservatively from
  *before* the renewal was sent, so it stops trusting it no later than T.
- A renewal commits only if the process has applied the current version, and takes a
  share lock on `rbac_version`: it either commits before a writer's bump (so that
  writer sees the lease and waits for it) or waits for the writer and sees its version.
- The NOTIFY makes a process apply the version and then acknowledge it by renewing.
  Applying (`catch_up`) reads what the versions since the last applied one touched from
  the change log (`rbac_changes`, migration 0008) and hands it to the caches, which drop
  those entries only (or everything, when the log cannot say); only then does `applied`
  move. A writer, after its commit, returns only once every live lease has acknowledged
  its version or lapsed; since nothing can renew without applying first, that takes at
  most one lease time, and normally a few milliseconds.

Losing PostgreSQL: the listener connection dies, the lease is dropped at once and
checks go to PostgreSQL, which answers UNAVAILABLE (fail closed). Redis plays no part,
so losing it cannot revive anything. A process that hangs or is killed makes writers
wait until its lease lapses (IDENTITY_RBAC_LEASE_SECONDS) and no longer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable
from datetime import timedelta

import structlog

from identity.domain.clock import Clock
from identity.domain.errors import BackendUnavailable
from identity.domain.observer import NOOP, Observer
from identity.domain.rbac_changes import MAX_ROWS_TRIMMED, RbacChanges, readable, summarise
from identity.services.acknowledgement import until_acknowledged
from identity.services.single_flight import SingleFlight
from identity.store.database import Database
from identity.store.rbac_changes import RbacChangeRepository
from identity.store.rbac_channel import RbacChannel, RbacListenConnection
from identity.store.rbac_leases import RbacLeaseRepository

log = structlog.get_logger("identity.rbac_sync")

_RECONNECT_DELAY = 0.5
_MAX_RECONNECT_DELAY = 5.0
_STALE_LEASE_RETENTION = timedelta(hours=1)


class RbacSync:
    def __init__(
        self,
        db: Database,
        channel: RbacChannel,
        clock: Clock,
        *,
        lease_ttl: timedelta,
        observer: Observer = NOOP,
    ) -> None:
        self._observer = observer
        self._db = db
        self._channel = channel
        self._clock = clock
        self._ttl = lease_ttl
        self._ttl_seconds = lease_ttl.total_seconds()
        # Room for clock-rate differences between this host and PostgreSQL's.
        self._margin = max(0.05, self._ttl_seconds * 0.1)
        self._renew_every = self._ttl_seconds / 3
        self.lease_id = uuid.uuid4()
        self._host = socket.gethostname()[:128]
        # The highest RBAC version whose changes the caches have been given: they hold
        # nothing a version up to it made stale. The lease is renewed for this one only.
        self.applied = -1
        # The highest version known to be committed (notified, renewed against, or read by
        # a cache fill); applied by the next catch-up.
        self.seen = -1
        # Until when (by the clock's monotonic reading) this process may trust its caches;
        # read on every check.
        self.lease_until = 0.0
        self._on_change: list[Callable[[RbacChanges], None]] = []
        self._applying = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._listening = False
        self._revalidation = SingleFlight(self._renew)

    def on_change(self, callback: Callable[[RbacChanges], None]) -> None:
        """`callback` is given what each catch-up applies, synchronously (no other task runs
        between it and `applied` moving); it must not await or walk a whole cache."""
        self._on_change.append(callback)

    def trusted(self) -> bool:
        """May this process answer from its cache right now?"""
        return self._clock.monotonic() < self.lease_until

    def observe(self, version: int) -> None:
        """A committed version seen anywhere (notification, renewal, a fill's snapshot); the
        next catch-up applies it, and always before the lease is renewed for it."""
        if version > self.seen:
            self.seen = version

    async def catch_up(self, changes: RbacChangeRepository | None = None) -> None:
        """Applies every version observed so far: reads what (applied, seen] touched (on
        `changes`, the listening connection's, else through the pool) and hands it to the
        caches. Raises BackendUnavailable if PostgreSQL does not answer."""
        async with self._applying:
            while self.seen > self.applied:
                after, upto = self.applied, self.seen
                if not readable(after, upto):
                    self._apply(RbacChanges.all_at(upto))
                    continue
                if changes is None:
                    async with self._db.reader() as uow:
                        rows = await uow.rbac_changes.between(after, upto, MAX_ROWS_TRIMMED + 1)
                else:
                    rows = await changes.between(after, upto, MAX_ROWS_TRIMMED + 1)
                self._apply(summarise(after, upto, rows))

    def _apply(self, changes: RbacChanges) -> None:
        for callback in self._on_change:
            callback(changes)
        self.applied = changes.version

    def _drop_lease(self) -> None:
        self.lease_until = 0.0

    async def start(self, ready_timeout: float = 5.0) -> None:
        """Starts listening and takes the first lease (waits for it a little, not forever:
        without a lease checks are still right, only slower)."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="rbac-sync")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), ready_timeout)

    async def stop(self) -> None:
        self._drop_lease()
        self._listening = False
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(BackendUnavailable):
            async with self._db.reader() as uow:
                await uow.rbac_leases.release(self.lease_id)

    async def wait_applied(self, version: int) -> None:
        """Called by a writer after its commit: returns once no process can answer from a
        cache older than `version`."""
        self.observe(version)
        deadline = self._clock.monotonic() + self._ttl_seconds + self._margin
        if self._task is not None:
            # Acknowledge for this process now rather than when its own NOTIFY arrives.
            with contextlib.suppress(BackendUnavailable):
                await self._renew()

        async def unacknowledged() -> int:
            async with self._db.reader() as uow:
                return await uow.rbac_leases.pending(version)

        await until_acknowledged(unacknowledged, deadline, self._clock)

    async def revalidate(self) -> bool:
        """For a check that found the lease lapsed (e.g. a renewal late under load): one
        renewal shared by every such check, instead of a query per check. Only while
        listening: a lease without notifications would make every writer wait it out.
        Raises BackendUnavailable if PostgreSQL does not answer (the check fails closed)."""
        if not self._listening:
            return False
        await self._revalidation()
        return self.trusted()

    async def _renew(
        self, leases: RbacLeaseRepository | None = None, changes: RbacChangeRepository | None = None
    ) -> None:
        """Renews the lease (on the listening connection's `leases` and `changes`, else
        through the pool), applying first every version seen, and again if a newer one has
        been committed meanwhile."""
        for _ in range(5):
            await self.catch_up(changes)
            started = self._clock.monotonic()
            if leases is None:
                async with self._db.reader() as uow:
                    current, renewed = await uow.rbac_leases.renew(
                        self.lease_id, self.applied, self._ttl, self._host, os.getpid()
                    )
            else:
                current, renewed = await leases.renew(
                    self.lease_id, self.applied, self._ttl, self._host, os.getpid()
                )
            if renewed:
                self.lease_until = max(self.lease_until, started + self._ttl_seconds - self._margin)
                self._ready.set()
                return
            # Behind: apply `current` (next time round), then acknowledge it.
            self.observe(current)
        self._drop_lease()

    async def _run(self) -> None:
        with contextlib.suppress(BackendUnavailable):
            async with self._db.transaction() as uow:
                await uow.rbac_leases.prune(_STALE_LEASE_RETENTION)
        delay = _RECONNECT_DELAY
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except BackendUnavailable as exc:
                was_listening, self._listening = self._listening, False
                self._drop_lease()
                if was_listening:
                    self._observer.rbac_lease_lost()
                    delay = _RECONNECT_DELAY
                if delay == _RECONNECT_DELAY:
                    log.warning("rbac_sync_lost", cause=type(exc.__cause__).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_RECONNECT_DELAY)

    async def _listen(self) -> None:
        async with self._channel.listen() as connection:
            await self._renew(connection.leases, connection.changes)
            self._listening = True
            await self._follow(connection)

    async def _follow(self, connection: RbacListenConnection) -> None:
        """Applies each notified version and renews the lease on the listening
        connection (at once after a notification, else every third of the lease time)."""
        next_renewal = self._clock.monotonic() + self._renew_every
        while True:
            latest = await connection.next_version(next_renewal - self._clock.monotonic())
            if latest is not None:
                self.observe(latest)
            elif self._clock.monotonic() < next_renewal:
                continue
            await self._renew(connection.leases, connection.changes)
            next_renewal = self._clock.monotonic() + self._renew_every
