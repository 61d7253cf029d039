"""Gauges of state rather than events, read on a timer in each process: the pool and
the RBAC lease every second (cheap, in memory), the key ring and the partitions
twice a minute (one small query each). Sampled values go through the same files as
everything else in multiprocess mode, so any worker's scrape sees them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from identity.domain.errors import BackendUnavailable
from identity.observability.metrics import Metrics

if TYPE_CHECKING:
    from identity.container import Services

log = structlog.get_logger("identity.metrics")

FAST_SECONDS = 1.0
SLOW_EVERY = 30  # fast ticks


class Sampler:
    def __init__(self, metrics: Metrics, services: Services, flush: Callable[[], None]) -> None:
        self._metrics = metrics
        # The call tallies (MetricsObserver.flush): other workers' scrapes see them within a second.
        self._flush = flush
        self._services = services
        self._task: asyncio.Task[None] | None = None
        metrics.pool_max.set(services.settings.db_pool_max)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        tick = 0
        while True:
            self.sample_fast()
            if tick % SLOW_EVERY == 0:
                await self.sample_slow()
            tick += 1
            await asyncio.sleep(FAST_SECONDS)

    def sample_fast(self) -> None:
        self._flush()
        stats = self._services.db.pool_stats()
        self._metrics.pool_in_use.set(stats.get("pool_size", 0) - stats.get("pool_available", 0))
        self._metrics.pool_waiting.set(stats.get("requests_waiting", 0))
        self._metrics.lease_held.set(1 if self._services.rbac_sync.trusted() else 0)

    async def sample_slow(self) -> None:
        try:
            # Read everything first, then set: a scrape sees one sample's values together.
            keys = await self._services.keys.list_keys()
            published = len(await self._services.keys.jwks())
            months = await self._services.partitions.months_ready_ahead()
            active = next((key for key in keys if key.state == "active"), None)
            if active is not None:
                self._metrics.key_created.set(active.created_at.timestamp())
            self._metrics.keys_published.set(published)
            self._metrics.partition_months.set(months)
        except BackendUnavailable:
            pass  # the database is down: health says so, and the last values stand
        except Exception as exc:  # a sampling bug must not end the task
            log.warning("metrics_sample_failed", error_type=type(exc).__name__)
