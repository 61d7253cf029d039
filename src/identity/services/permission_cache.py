"""The permission cache: what CheckPermission is answered from, in this process.

It holds three kinds of entry, each read from PostgreSQL in one statement and tagged
with the RBAC version that statement saw:
- a user's grants (their live assignments), with the decisions already reached from
  them (memoised, so the common check is two dictionary lookups);
- a live service key, by its digest;
- the permission catalogue (every permission a check may grant).

The one staleness rule, for every entry and every memoised decision alike: an entry
tagged with version V and deadline D answers at time T (the clock's monotonic
reading) only if
    V == sync.applied   (no RBAC write this process has seen since it was read),
    T < D               (a user's earliest assignment expiry; no deadline otherwise),
    T < sync.lease_until (this process holds its lease, see authz_sync).
Anything else is read again. Since every RBAC write bumps the version and returns
only once every lease holder has applied it (authz_sync), a write that has returned
is seen by the next check on every process. Entries are dropped wholesale when a
newer version is applied (`clear`), which also forgets loads begun before it, so a
load in flight across a write can never be joined afterwards. PostgreSQL errors fail
closed (UNAVAILABLE)."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from uuid import UUID

from identity.domain.clock import Clock
from identity.domain.errors import ServiceKeyInvalid
from identity.domain.observer import NOOP, CacheEvent, Observer
from identity.domain.permissions import Decision, UserGrants
from identity.security import opaque
from identity.services.authz_sync import RbacSync
from identity.store.database import Database

_MAX_MEMO_PER_USER = 256


@dataclass(frozen=True)
class CheckCaller:
    """Who asks: a peer service (by key name) or a user about themself."""

    service: str | None = None
    user_id: UUID | None = None


class Entry:
    """Something read at one RBAC version, usable until a deadline."""

    __slots__ = ("deadline", "version")

    def __init__(self, version: int, deadline: float = math.inf) -> None:
        self.version = version
        self.deadline = deadline


class UserEntry(Entry):
    """A user's grants, and the decisions already reached from them."""

    __slots__ = ("cached", "decisions", "grants")

    def __init__(self, version: int, deadline: float, grants: UserGrants, cached: bool) -> None:
        super().__init__(version, deadline)
        self.grants = grants
        # False for an entry that was read but not kept (an unknown user, or a read that
        # raced a write): its decisions are not memoised either.
        self.cached = cached
        self.decisions: dict[str, Decision] = {}

    def remember(self, decision: Decision, catalogue_version: int) -> None:
        # Only when grants and catalogue are of the same version: then the decision is
        # exactly as fresh as this entry.
        if self.cached and catalogue_version == self.version and len(self.decisions) < _MAX_MEMO_PER_USER:
            self.decisions[decision.permission] = decision


class KeyEntry(Entry):
    __slots__ = ("caller",)

    def __init__(self, version: int, caller: CheckCaller) -> None:
        super().__init__(version)
        self.caller = caller


class CatalogueEntry(Entry):
    __slots__ = ("permissions",)

    def __init__(self, version: int, permissions: frozenset[str]) -> None:
        super().__init__(version)
        self.permissions = permissions


class PermissionCache:
    def __init__(
        self, db: Database, sync: RbacSync, clock: Clock, *, max_users: int, observer: Observer = NOOP
    ) -> None:
        self._observer = observer
        self._db = db
        self._sync = sync
        self._clock = clock
        self._max_users = max(1, max_users)
        # Keyed by the canonical text of the user id, so that a check naming the user in
        # that form needs no UUID parsing.
        self._users: dict[str, UserEntry] = {}
        self._keys: dict[bytes, KeyEntry] = {}
        self._catalogue: CatalogueEntry | None = None
        # Loads in flight, so a burst of checks for one cold user costs one query.
        self._loading: dict[UUID, asyncio.Task[UserEntry]] = {}
        sync.on_change(self.clear)

    def clear(self, _version: int = 0) -> None:
        self._observer.permission_cache(CacheEvent.INVALIDATION)
        self._users = {}
        self._keys = {}
        self._catalogue = None
        self._loading = {}

    def _fresh(self, entry: Entry | None) -> bool:
        """The staleness rule of the module docstring."""
        if entry is None:
            return False
        now = self._clock.monotonic()
        sync = self._sync
        return entry.version == sync.applied and now < entry.deadline and now < sync.lease_until

    async def _trust(self) -> bool:
        """True when the lease holds, renewing it first if it has just lapsed."""
        return self._sync.trusted() or await self._sync.revalidate()

    # -- the common check, with no await -------------------------------------------------

    def known(self, secret: str, user_key: str, permission: str) -> Decision | None:
        """A decision already reached for a peer's repeated question (service key `secret`,
        user id text `user_key`), if key and user entry are both fresh; else None."""
        if len(secret) > opaque.MAX_OPAQUE_LENGTH:
            return None
        key = self._keys.get(opaque.digest(secret))
        entry = self._users.get(user_key)
        if entry is None or not self._fresh(key) or not self._fresh(entry):
            return None
        return self._hit(entry.decisions.get(permission))

    def known_for_user(self, user_key: str, permission: str) -> Decision | None:
        entry = self._users.get(user_key)
        return (
            self._hit(entry.decisions.get(permission)) if self._fresh(entry) and entry is not None else None
        )

    def _hit(self, decision: Decision | None) -> Decision | None:
        # A miss here is not counted: the caller goes on to `user`, which counts it.
        if decision is not None:
            self._observer.permission_cache(CacheEvent.HIT)
        return decision

    # -- entries ----------------------------------------------------------------------

    async def user(self, user_id: UUID) -> UserEntry:
        key = str(user_id)
        hit = self._users.get(key)
        if self._fresh(hit) and hit is not None:
            self._observer.permission_cache(CacheEvent.HIT)
            return hit
        if not await self._trust():
            self._observer.permission_cache(CacheEvent.MISS)
            return await self._load_user(user_id)
        hit = self._users.get(key)
        if self._fresh(hit) and hit is not None:
            self._observer.permission_cache(CacheEvent.HIT)
            return hit
        self._observer.permission_cache(CacheEvent.MISS)
        loading = self._loading.get(user_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load_user(user_id))
            self._loading[user_id] = loading
            loading.add_done_callback(lambda task: self._forget_load(user_id, task))
        return await asyncio.shield(loading)

    async def grants(self, user_id: UUID) -> UserGrants:
        return (await self.user(user_id)).grants

    def _forget_load(self, user_id: UUID, task: asyncio.Task[UserEntry]) -> None:
        if self._loading.get(user_id) is task:
            del self._loading[user_id]
        if not task.cancelled():
            task.exception()  # retrieved: a failed load is reported to its awaiters, not logged

    async def _load_user(self, user_id: UUID) -> UserEntry:
        started = self._clock.monotonic()
        as_of = self._clock.now()
        async with self._db.reader() as uow:
            snapshot = await uow.roles.grant_snapshot(user_id, as_of)
        grants = UserGrants.build(
            user_id, exists=snapshot.exists, disabled=snapshot.disabled, rows=snapshot.rows, now=as_of
        )
        self._sync.observe(snapshot.version)
        deadline = (
            math.inf if grants.next_expiry is None else started + (grants.next_expiry - as_of).total_seconds()
        )
        # Unknown users are not kept: creating a user does not bump the RBAC version.
        cached = grants.exists and snapshot.version == self._sync.applied
        entry = UserEntry(snapshot.version, deadline, grants, cached)
        if cached:
            users = self._users
            if len(users) >= self._max_users:
                del users[next(iter(users))]
            users[str(user_id)] = entry
        return entry

    async def catalogue(self) -> CatalogueEntry:
        cached = self._catalogue
        if cached is not None and await self._trust() and self._fresh(cached):
            return cached
        async with self._db.reader() as uow:
            version, permissions = await uow.roles.catalogue()
        loaded = CatalogueEntry(version, permissions)
        self._sync.observe(version)
        if version == self._sync.applied:
            self._catalogue = loaded
        return loaded

    async def service_caller(self, secret: str) -> CheckCaller:
        if len(secret) > opaque.MAX_OPAQUE_LENGTH:
            raise ServiceKeyInvalid()
        digest = opaque.digest(secret)
        cached = self._keys.get(digest)
        if cached is not None and (self._fresh(cached) or (await self._trust() and self._fresh(cached))):
            return cached.caller
        async with self._db.reader() as uow:
            version, key = await uow.service_keys.find_live(digest)
        self._sync.observe(version)
        if key is None:
            raise ServiceKeyInvalid()
        caller = CheckCaller(service=key.name)
        if version == self._sync.applied:
            self._keys[digest] = KeyEntry(version, caller)
        return caller
