"""What the services tell the outside world about what they did: login outcomes,
refresh rotations, permission decisions, cache and lease events, backend errors.

Services, the store and the api edge call an `Observer`; they never import a metrics
or tracing library. The composition root passes the Prometheus/OpenTelemetry
implementation (identity.observability) when it is configured, `NOOP` otherwise.
Every argument is a bounded value (an enum member or a short fixed word): nothing
that names a user, a login or a secret ever reaches a label or a span."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import Enum
from typing import Protocol

from identity.domain.models import LoginOutcome
from identity.domain.permissions import DecisionReason


class RefreshOutcome(Enum):
    ROTATED = "rotated"
    REUSE_DETECTED = "reuse_detected"


class ThrottleScope(Enum):
    ACCOUNT = "account"
    ADDRESS = "address"


class CacheEvent(Enum):
    HIT = "hit"
    MISS = "miss"
    INVALIDATION = "invalidation"


class Observer(Protocol):
    def rpc_done(self, service: str, method: str, code: str, seconds: float) -> None:
        """One call of ours finished with gRPC status `code` (its name, e.g. "OK")."""

    def password_check(self, outcome: LoginOutcome, *, reauthentication: bool) -> None:
        """A login (or a signed-in caller's re-authentication) ended with `outcome`."""

    def mfa(self, outcome: LoginOutcome) -> None:
        """A second factor was checked (MFA_SUCCESS or MFA_FAILED)."""

    def refresh(self, outcome: RefreshOutcome) -> None: ...

    def throttled(self, scope: ThrottleScope) -> None: ...

    def account_locked(self) -> None:
        """An account just reached the consecutive-failure limit (counted once per lockout)."""

    def decision(self, reason: DecisionReason) -> None: ...

    def permission_cache(self, event: CacheEvent) -> None: ...

    def rbac_lease_lost(self) -> None:
        """The listening connection died: checks go to PostgreSQL until it is back."""

    def redis_error(self) -> None: ...

    def db_pool_timeout(self) -> None:
        """A call waited IDENTITY_DB_TIMEOUT_SECONDS for a pooled connection and got none."""

    def bcrypt(self, operation: str) -> contextlib.AbstractContextManager[None]:
        """Wraps one bcrypt computation ("hash" or "verify"), queueing included."""


class NoopObserver:
    """The default: observes nothing, costs a method call."""

    def rpc_done(self, service: str, method: str, code: str, seconds: float) -> None:
        pass

    def password_check(self, outcome: LoginOutcome, *, reauthentication: bool) -> None:
        pass

    def mfa(self, outcome: LoginOutcome) -> None:
        pass

    def refresh(self, outcome: RefreshOutcome) -> None:
        pass

    def throttled(self, scope: ThrottleScope) -> None:
        pass

    def account_locked(self) -> None:
        pass

    def decision(self, reason: DecisionReason) -> None:
        pass

    def permission_cache(self, event: CacheEvent) -> None:
        pass

    def rbac_lease_lost(self) -> None:
        pass

    def redis_error(self) -> None:
        pass

    def db_pool_timeout(self) -> None:
        pass

    @contextlib.contextmanager
    def bcrypt(self, operation: str) -> Iterator[None]:
        yield


NOOP: Observer = NoopObserver()
