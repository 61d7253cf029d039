"""Login throttling per account and per client address (fixed windows in Redis).

Counted before the password hash is checked. Redis holds only these windows; the
durable limit of consecutive failures lives on the user row (UserRepository)."""

from __future__ import annotations

from datetime import timedelta

from identity.domain.errors import Throttled
from identity.domain.observer import NOOP, Observer, ThrottleScope
from identity.store.redis import RedisStore


class LoginThrottle:
    def __init__(
        self,
        redis: RedisStore,
        *,
        per_account: int,
        per_ip: int,
        window: timedelta,
        observer: Observer = NOOP,
    ) -> None:
        self._observer = observer
        self._redis = redis
        self._per_account = per_account
        self._per_ip = per_ip
        self._window = int(window.total_seconds())

    async def count_attempt(self, account: str, ip: str | None) -> None:
        """Counts one attempt on `account` (a key naming the account: `acct:<login>` for a
        login, `user:<id>` for a signed-in caller) and from `ip`; raises when either is over."""
        count, ttl = await self._redis.hit(f"login:{account}", self._window)
        if count > self._per_account:
            self._observer.throttled(ThrottleScope.ACCOUNT)
            raise Throttled(ttl)
        if ip is not None:
            count, ttl = await self._redis.hit(f"login:ip:{ip}", self._window)
            if count > self._per_ip:
                self._observer.throttled(ThrottleScope.ADDRESS)
                raise Throttled(ttl)
