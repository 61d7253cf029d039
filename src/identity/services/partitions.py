"""login_history partition maintenance: create months ahead, list, prune past retention.

Every run holds one advisory lock for its whole transaction, so any number of
server processes (and an operator's CLI) may run it at once: they take turns, and
each later run finds the work done. The DEFAULT partition is never dropped: it is
what keeps a login from ever failing for want of a partition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from identity.domain.clock import Clock
from identity.domain.errors import InvalidArgument
from identity.domain.partitions import Partition, add_months, month_start
from identity.store.database import Database
from identity.store.partitions import partition_name

log = structlog.get_logger("identity.partitions")

# (steps done, steps in all, the partition being worked on or ""): for a progress display.
Progress = Callable[[int, int, str], None]

MAX_MONTHS_AHEAD = 120
MAX_RETENTION_MONTHS = 1200


@dataclass(frozen=True)
class CreatedPartition:
    name: str
    start: datetime
    end: datetime
    # Rows of this month found in DEFAULT and moved into the new partition.
    moved_rows: int


@dataclass(frozen=True)
class PruneResult:
    # Partitions wholly before this instant are past retention.
    cutoff: datetime
    dropped: list[Partition]
    dry_run: bool


def months_to_cover(first_month: datetime, months_ahead: int) -> list[tuple[datetime, datetime]]:
    """[start, end) of first_month's month and of the months_ahead months after it."""
    first = month_start(first_month)
    return [(add_months(first, i), add_months(first, i + 1)) for i in range(months_ahead + 1)]


def retention_cutoff(now: datetime, older_than_months: int) -> datetime:
    """Keep the current month and the older_than_months whole months before it."""
    return add_months(month_start(now), -older_than_months)


class PartitionService:
    def __init__(self, db: Database, clock: Clock, *, months_ahead: int, retention_months: int) -> None:
        self._db = db
        self._clock = clock
        self.months_ahead = months_ahead
        self.retention_months = retention_months

    async def ensure(
        self,
        months_ahead: int | None = None,
        *,
        first_month: datetime | None = None,
        progress: Progress | None = None,
    ) -> list[CreatedPartition]:
        """Creates each missing monthly partition from first_month (default: the
        current month) to months_ahead months after it, in one transaction."""
        ahead = self.months_ahead if months_ahead is None else months_ahead
        if not 0 <= ahead <= MAX_MONTHS_AHEAD:
            raise InvalidArgument("months_ahead", f"months ahead must be 0 to {MAX_MONTHS_AHEAD}")
        created: list[CreatedPartition] = []
        async with self._db.transaction() as uow:
            await uow.partitions.lock()
            existing = await uow.partitions.partitions()
            missing = [
                (start, end)
                for start, end in months_to_cover(first_month or self._clock.now(), ahead)
                if not any(p.overlaps(start, end) for p in existing)
            ]
            for start, end in missing:
                _report(progress, len(created), len(missing), partition_name(start))
                moved = await uow.partitions.create_month(start, end)
                created.append(CreatedPartition(partition_name(start), start, end, moved))
            _report(progress, len(created), len(missing), "")
        for item in created:
            log.info("partition_created", partition=item.name, moved_rows=item.moved_rows)
        return created

    async def uncovered_months(self, months_ahead: int | None = None) -> list[datetime]:
        """Read-only: the months from the current one to months_ahead later that have no
        partition yet (their logins would land in DEFAULT)."""
        ahead = self.months_ahead if months_ahead is None else months_ahead
        async with self._db.transaction() as uow:
            existing = await uow.partitions.partitions()
        return [
            start
            for start, end in months_to_cover(self._clock.now(), ahead)
            if not any(p.overlaps(start, end) for p in existing)
        ]

    async def list_partitions(self) -> list[Partition]:
        """Every partition with its range and exact row count, oldest first, DEFAULT last."""
        async with self._db.transaction() as uow:
            return await uow.partitions.partitions(with_counts=True)

    async def months_ready_ahead(self) -> int:
        """How many months after the current one already have their partition, counted
        without a gap (-1 when even the current month has none), for monitoring."""
        async with self._db.transaction() as uow:
            existing = await uow.partitions.partitions()
        month = month_start(self._clock.now())
        ahead = -1
        while ahead < MAX_MONTHS_AHEAD and any(p.overlaps(month, add_months(month, 1)) for p in existing):
            ahead += 1
            month = add_months(month, 1)
        return ahead

    async def prune(
        self,
        older_than_months: int | None = None,
        *,
        dry_run: bool = False,
        now: datetime | None = None,
        progress: Progress | None = None,
    ) -> PruneResult:
        """Detaches and drops the monthly partitions that end on or before the cutoff."""
        months = self.retention_months if older_than_months is None else older_than_months
        if not 1 <= months <= MAX_RETENTION_MONTHS:
            raise InvalidArgument("older_than", f"retention must be 1 to {MAX_RETENTION_MONTHS} months")
        cutoff = retention_cutoff(now or self._clock.now(), months)
        async with self._db.transaction() as uow:
            await uow.partitions.lock()
            expired = [
                p
                for p in await uow.partitions.partitions(with_counts=True)
                if not p.is_default and p.end is not None and p.end <= cutoff
            ]
            if not dry_run:
                for done, partition in enumerate(expired):
                    _report(progress, done, len(expired), partition.name)
                    await uow.partitions.drop(partition.name)
                _report(progress, len(expired), len(expired), "")
        if not dry_run:
            for partition in expired:
                log.info("partition_dropped", partition=partition.name, rows=partition.rows)
        return PruneResult(cutoff, expired, dry_run)


def _report(progress: Progress | None, done: int, total: int, current: str) -> None:
    if progress is not None:
        progress(done, total, current)


async def run_periodic_ensure(service: PartitionService, interval: timedelta) -> None:
    """The server's daily task: ensure again after every interval, until cancelled.
    A failed run is logged and retried next time; DEFAULT catches logins meanwhile."""
    while True:
        await asyncio.sleep(interval.total_seconds())
        try:
            await service.ensure()
        except Exception as exc:  # keep the task alive: a missed run is not fatal
            log.warning("partition_ensure_failed", error_type=type(exc).__name__)
