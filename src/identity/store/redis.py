"""Redis: only what may be lost (rate-limit windows, caches). Every key carries
the configured prefix; failures become BackendUnavailable (fail closed).

A pooled connection that died (Redis restarted) fails its next command; that command
is retried once at once on a fresh connection, so once Redis answers again no call
fails for it. redis-py's own default when built from a URL is no retry at all."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from identity.domain.errors import BackendUnavailable
from identity.domain.observer import NOOP, Observer


class RedisStore:
    def __init__(self, url: str, prefix: str, observer: Observer = NOOP) -> None:
        self._observer = observer
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            health_check_interval=30,
            retry=Retry(NoBackoff(), retries=1),
        )
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError):
            self._observer.redis_error()
            return False

    async def hit(self, key: str, window_seconds: int) -> tuple[int, int]:
        """Counts one event in a fixed window; returns (count, seconds left in the window)."""
        full = self.key("rl", key)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.incr(full)
                pipe.expire(full, window_seconds, nx=True)
                pipe.ttl(full)
                count, _, ttl = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._observer.redis_error()
            raise BackendUnavailable() from exc
        return int(count), max(int(ttl), 1)
