"""The permission cache: what CheckPermission is answered from, in this process.

It holds four kinds of entry, each read from PostgreSQL in one statement together with
the RBAC version that statement saw (laid out compactly: permission_tables.py):
- a user's record: their live and expired assignments, as role numbers;
- a role: its name and permissions, once however many users hold it;
- a live service key, by its digest;
- the permission catalogue (every permission a check may grant).

The one staleness rule, for every entry alike: an entry answers at time T (the clock's
monotonic reading) only if
    it is in its table        (nothing applied since it was read has touched it),
    T < its deadline          (a user's earliest assignment expiry; none otherwise),
    T < sync.lease_until      (this process holds its lease, see authz_sync).
Applying RBAC version V (authz_sync, before the lease is renewed for V) takes out of
the tables what the changes of (applied, V] touched, as the change log names them: a
user, a role (and the catalogue with it), the service keys, the catalogue; a role that
lost holders in bulk marks its holders' records read before V as gone; when the log
cannot say, every table is replaced by an empty one. A read is stored only if its
version is no older than the applied one (else a change applied meanwhile may have
missed it); loads in flight are forgotten at every apply, so a check that began after
a write never joins a load that began before it. Since every RBAC write returns only
once every lease holder has applied it, a write that has returned is seen by the next
check on every process. PostgreSQL errors fail closed (UNAVAILABLE)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from identity.domain.clock import Clock
from identity.domain.errors import ServiceKeyInvalid
from identity.domain.observer import NOOP, CacheEvent, Observer
from identity.domain.permissions import Decision, DecisionReason, RoleGrants, UserGrants
from identity.domain.rbac_changes import RbacChanges
from identity.security import opaque
from identity.services.authz_sync import RbacSync
from identity.services.permission_tables import (
    NO_DEADLINE,
    RoleEntry,
    Tables,
    User,
    UserRecord,
    deadline_of,
    decide,
    pack_user,
    release,
    user_grants,
    user_key,
)
from identity.store.database import Database

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class CheckCaller:
    """Who asks: a peer service (by key name) or a user about themself."""

    service: str | None = None
    user_id: UUID | None = None


@dataclass(frozen=True)
class CatalogueEntry:
    version: int
    permissions: frozenset[str]


class UserView:
    """One user's grants as one check (or batch) sees them: resolved from one set of
    tables for that call (whose permission numbers its roles use), never stored."""

    __slots__ = ("disabled", "exists", "expired", "live", "tables", "user_id")

    def __init__(
        self,
        tables: Tables,
        user_id: UUID,
        exists: bool,
        disabled: bool,
        live: tuple[RoleEntry, ...] = (),
        expired: tuple[RoleEntry, ...] = (),
    ) -> None:
        self.tables = tables
        self.user_id = user_id
        self.exists = exists
        self.disabled = disabled
        self.live = live
        self.expired = expired


class PermissionCache:
    def __init__(
        self, db: Database, sync: RbacSync, clock: Clock, *, max_users: int, observer: Observer = NOOP
    ) -> None:
        self._observer = observer
        self._db = db
        self._sync = sync
        self._clock = clock
        self._max_users = max(1, max_users)
        self._tables = Tables()
        self._keys: dict[bytes, CheckCaller] = {}
        self._catalogue: CatalogueEntry | None = None
        # Loads in flight, so a burst of checks for one cold user (or role) costs one query.
        self._user_loads: dict[UUID, asyncio.Task[UserView]] = {}
        self._role_loads: dict[tuple[UUID, ...], asyncio.Task[dict[UUID, RoleEntry]]] = {}
        sync.on_change(self.apply)

    @property
    def users(self) -> int:
        return len(self._tables.users)

    # -- invalidation (called by authz_sync, synchronously, before the lease is renewed) --

    def apply(self, changes: RbacChanges) -> None:
        """Takes out what `changes` touched: work in proportion to the change, never to the
        cache (clearing replaces the tables and frees the old ones in the background)."""
        self._observer.permission_cache(CacheEvent.INVALIDATION)
        self._user_loads = {}
        self._role_loads = {}
        if changes.everything:
            self.clear()
            return
        tables = self._tables
        for user_id in changes.users:
            tables.users.pop(user_id.int, None)
        for role_id in changes.roles:
            number = tables.role_numbers.get(role_id)
            if number is not None:
                tables.roles.pop(number, None)
        for role_id in changes.members:
            number = tables.role_numbers.get(role_id)
            if number is not None:
                tables.members_changed[number] = changes.version
        if changes.roles or changes.catalogue:
            self._catalogue = None
        if changes.keys:
            self._keys = {}

    def clear(self) -> None:
        old, self._tables = self._tables, Tables()
        self._keys = {}
        self._catalogue = None
        self._user_loads = {}
        self._role_loads = {}
        release(old.users)

    # -- the staleness rule ----------------------------------------------------------------

    def _trusted_now(self) -> bool:
        return self._clock.monotonic() < self._sync.lease_until

    def _fresh(self, record: UserRecord | None) -> User | None:
        """The record unpacked if it may answer (the rule of the module docstring)."""
        if record is None:
            return None
        now = self._clock.monotonic()
        if not (now < deadline_of(record) and now < self._sync.lease_until):
            return None
        user = User(record)
        return None if self._tables.stale(user) else user

    def _keeps(self, version: int) -> bool:
        """Whether a read at `version` may be stored: not if a change applied since may
        have missed it."""
        self._sync.observe(version)
        return version >= self._sync.applied

    async def _trust(self) -> bool:
        """True when the lease holds, renewing it first if it has just lapsed."""
        return self._sync.trusted() or await self._sync.revalidate()

    # -- the common check, with no await -------------------------------------------------

    def known(self, secret: str, user_id: str, permission: str) -> Decision | None:
        """The answer to a peer's question (service key `secret`, user id text `user_id`)
        from the tables alone, if key, user, roles (and the catalogue, when the answer
        needs it) are all fresh there; else None: ask `user` and `decide`."""
        if len(secret) > opaque.MAX_OPAQUE_LENGTH or opaque.digest(secret) not in self._keys:
            return None
        return self.known_for_user(user_id, permission)

    def known_for_user(self, user_id: str, permission: str) -> Decision | None:
        key = user_key(user_id)
        user = None if key is None else self._fresh(self._tables.users.get(key))
        if user is None:
            return None
        view = self._view(user)
        if view is None:
            return None
        decision = self._decide_now(view, permission)
        # NO_SUCH_PERMISSION may be a malformed name: the full path validates it first.
        if decision is None or decision.reason is DecisionReason.NO_SUCH_PERMISSION:
            return None
        self._observer.permission_cache(CacheEvent.HIT)
        return decision

    def _view(self, user: User, user_id: UUID | None = None) -> UserView | None:
        tables = self._tables
        live = tables.resolve(user.live)
        expired = tables.resolve(user.expired)
        if live is None or expired is None:
            return None
        return UserView(tables, user_id or _NO_USER, True, user.disabled, live, expired)

    def _decide_now(self, view: UserView, permission: str) -> Decision | None:
        catalogue = self._catalogue
        known = catalogue.permissions if catalogue is not None and self._trusted_now() else None
        permission_id = view.tables.permission_ids.get(permission)
        return decide(permission, view.live, view.expired, permission_id, known)

    # -- decisions and grants --------------------------------------------------------------

    async def decide(self, view: UserView, permission: str) -> Decision:
        """The one decision path, for a well-formed permission name."""
        if not view.exists:
            return Decision(permission, False, DecisionReason.USER_UNKNOWN)
        decision = self._decide_now(view, permission)
        if decision is None:
            catalogue = await self.catalogue()
            permission_id = view.tables.permission_ids.get(permission)
            decision = decide(permission, view.live, view.expired, permission_id, catalogue.permissions)
            assert decision is not None
        return decision

    async def grants(self, user_id: UUID) -> UserGrants:
        view = await self.user(user_id)
        return user_grants(user_id, view.exists, view.disabled, view.live, view.expired)

    # -- entries ----------------------------------------------------------------------------

    async def user(self, user_id: UUID) -> UserView:
        key = user_id.int
        view = self._cached(key, user_id)
        if view is not None:
            return view
        if not await self._trust():
            self._observer.permission_cache(CacheEvent.MISS)
            return await self._load_user(user_id)
        view = self._cached(key, user_id)
        if view is not None:
            return view
        self._observer.permission_cache(CacheEvent.MISS)
        tables = self._tables
        user = self._fresh(tables.users.get(key))
        if user is not None:
            # Only roles are missing (changed since): read those, not the user.
            missing = tables.missing(user)
            found = await self._single(self._role_loads, tuple(missing), lambda: self._load_roles(missing))
            # The record's role numbers mean something only in the tables it came from: if
            # those were replaced meanwhile, read the user again.
            view = self._view_with(user, user_id, found) if self._tables is tables else None
            if view is not None:
                return view
        return await self._single(self._user_loads, user_id, lambda: self._load_user(user_id))

    def _cached(self, key: int, user_id: UUID) -> UserView | None:
        user = self._fresh(self._tables.users.get(key))
        if user is None:
            return None
        view = self._view(user, user_id)
        if view is not None:
            self._observer.permission_cache(CacheEvent.HIT)
        return view

    def _view_with(self, user: User, user_id: UUID, found: dict[UUID, RoleEntry]) -> UserView | None:
        tables = self._tables

        def entries(numbers: tuple[int, ...]) -> tuple[RoleEntry, ...] | None:
            resolved = []
            for number in numbers:
                entry = tables.roles.get(number)
                if entry is None and number < len(tables.role_ids):
                    entry = found.get(tables.role_ids[number])
                if entry is None or entry.names is not tables.permission_names:
                    return None  # deleted, or the tables were cleared meanwhile
                resolved.append(entry)
            return tuple(resolved)

        live, expired = entries(user.live), entries(user.expired)
        if live is None or expired is None:
            return None
        return UserView(tables, user_id, True, user.disabled, live, expired)

    async def _single(
        self, loads: dict[K, asyncio.Task[V]], key: K, load: Callable[[], Coroutine[Any, Any, V]]
    ) -> V:
        task = loads.get(key)
        if task is None:
            task = asyncio.ensure_future(load())
            loads[key] = task
            task.add_done_callback(lambda done: _forget(loads, key, done))
        return await asyncio.shield(task)

    async def _load_user(self, user_id: UUID) -> UserView:
        started = self._clock.monotonic()
        as_of = self._clock.now()
        async with self._db.reader() as uow:
            snapshot = await uow.roles.held_roles(user_id)
        if not snapshot.exists:
            # Unknown users are not kept: creating a user does not bump the RBAC version.
            self._sync.observe(snapshot.version)
            return UserView(self._tables, user_id, False, False)
        keep = self._keeps(snapshot.version)
        tables = self._tables
        live: list[RoleEntry] = []
        expired: list[RoleEntry] = []
        next_expiry = None
        if not snapshot.disabled:
            for held in snapshot.held:
                entry = self._role(held.role, keep)
                if held.expires_at is not None and held.expires_at <= as_of:
                    expired.append(entry)
                    continue
                live.append(entry)
                if held.expires_at is not None and (next_expiry is None or held.expires_at < next_expiry):
                    next_expiry = held.expires_at
        if keep:
            deadline = NO_DEADLINE if next_expiry is None else started + (next_expiry - as_of).total_seconds()
            record = pack_user(
                snapshot.version,
                deadline,
                snapshot.disabled,
                [tables.role_number(role.role_id) for role in live],
                [tables.role_number(role.role_id) for role in expired],
            )
            tables.add_user(user_id.int, record, self._max_users)
        return UserView(tables, user_id, True, snapshot.disabled, tuple(live), tuple(expired))

    def _role(self, grants: RoleGrants, keep: bool) -> RoleEntry:
        """The entry for a role just read: the table's when it has one, else a new one,
        stored if `keep`."""
        tables = self._tables
        number = tables.role_number(grants.role_id)
        entry = tables.roles.get(number)
        if entry is None:
            entry = tables.role_entry(grants)
            if keep:
                tables.roles[number] = entry
        return entry

    async def _load_roles(self, role_ids: list[UUID]) -> dict[UUID, RoleEntry]:
        async with self._db.reader() as uow:
            version, found = await uow.roles.role_grants(role_ids)
        keep = self._keeps(version)
        return {grants.role_id: self._role(grants, keep) for grants in found}

    async def catalogue(self) -> CatalogueEntry:
        cached = self._catalogue
        if cached is not None and (self._trusted_now() or await self._trust()) and cached is self._catalogue:
            return cached
        async with self._db.reader() as uow:
            version, permissions = await uow.roles.catalogue()
        loaded = CatalogueEntry(version, permissions)
        if self._keeps(version):
            self._catalogue = loaded
        return loaded

    async def service_caller(self, secret: str) -> CheckCaller:
        if len(secret) > opaque.MAX_OPAQUE_LENGTH:
            raise ServiceKeyInvalid()
        digest = opaque.digest(secret)
        cached = self._keys.get(digest)
        if cached is not None and (self._trusted_now() or await self._trust()) and digest in self._keys:
            return cached
        async with self._db.reader() as uow:
            version, key = await uow.service_keys.find_live(digest)
        keep = self._keeps(version)
        if key is None:
            raise ServiceKeyInvalid()
        caller = CheckCaller(service=key.name)
        if keep:
            self._keys[digest] = caller
        return caller


_NO_USER = UUID(int=0)


def _forget(loads: dict[K, asyncio.Task[V]], key: K, task: asyncio.Task[V]) -> None:
    if loads.get(key) is task:
        del loads[key]
    if not task.cancelled():
        task.exception()  # retrieved: a failed load is reported to its awaiters, not logged
