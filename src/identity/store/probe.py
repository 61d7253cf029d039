"""Reachability probes for start-up and `identity doctor`: one connection each, so
a failure carries the server's own reason instead of a pool timeout."""

from __future__ import annotations

import psycopg
import redis.asyncio as aioredis


async def probe_postgres(url: str, wait_seconds: float) -> None:
    """Connects once; raises psycopg.OperationalError with the server's reason."""
    conn = await psycopg.AsyncConnection.connect(
        url, connect_timeout=max(1, int(wait_seconds)), autocommit=True
    )
    await conn.close()


async def probe_redis(url: str, wait_seconds: float) -> None:
    """PING once; raises redis.exceptions.ConnectionError (or TimeoutError)."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=wait_seconds, socket_timeout=wait_seconds)
    try:
        await client.ping()
    finally:
        await client.aclose()


def redis_where(url: str) -> str:
    """host:port of a Redis URL, without credentials."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
