"""CheckPermission, CheckPermissions, ListUserPermissions, and the per-process cache
they are answered from.

Who may ask: a peer service with a service key (`authorization: Bearer sk_...`), or a
user with their own access token asking about themself. Nobody else gets an answer
about a user.

The cache holds each user's effective permissions, the permission catalogue and the
live service keys, each tagged with the RBAC version it was read at. An entry is used
only while this process holds a valid lease and the entry's version is the latest the
process has applied (authz_sync explains why that is exact across processes), and,
for a user, only until the earliest expiry among their assignments. Anything else is
read from PostgreSQL, whose errors fail closed (UNAVAILABLE)."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from uuid import UUID

from identity.domain.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from identity.domain.permissions import (
    MAX_BATCH_CHECKS,
    Decision,
    DecisionReason,
    EffectivePermission,
    PermissionCheck,
    Subject,
    UserGrants,
    is_valid_permission,
    validate_permission,
)
from identity.security import opaque
from identity.services.authz_sync import RbacSync, clock
from identity.services.tokens import TokenMissing, TokenService
from identity.store.database import Database

SERVICE_KEY_PREFIX = "sk_"


class ServiceKeyInvalid(Unauthenticated):
    reason = "TOKEN_INVALID"
    message = "service key is invalid or revoked"


@dataclass(frozen=True)
class CheckCaller:
    """Who asks: a peer service (by key name) or a user about themself."""

    service: str | None = None
    user_id: UUID | None = None


# What a check is asked with: a bearer credential (service key or access token), or a
# caller the transport already authenticated (a peer's client certificate).
Credential = str | CheckCaller | None


class UserEntry:
    """A user's grants as of one RBAC version, and the decisions already reached from
    them (memoised: the common check is two dictionary lookups)."""

    __slots__ = ("cached", "deadline", "decisions", "grants", "version")

    def __init__(self, version: int, deadline: float, grants: UserGrants, cached: bool) -> None:
        self.version = version
        # When (by authz_sync.clock) the earliest assignment expires: stale from then on.
        self.deadline = deadline
        self.grants = grants
        self.cached = cached
        self.decisions: dict[str, Decision] = {}


_MAX_MEMO_PER_USER = 256


class PermissionCache:
    def __init__(self, db: Database, sync: RbacSync, *, max_users: int) -> None:
        self._db = db
        self._sync = sync
        self._max_users = max(1, max_users)
        # Keyed by the canonical text of the user id, so that a check naming the user in
        # that form needs no UUID parsing.
        self._users: dict[str, UserEntry] = {}
        self._keys: dict[bytes, tuple[int, CheckCaller]] = {}
        self._catalogue: tuple[int, frozenset[str]] | None = None
        # Loads in flight, so a burst of checks for one cold user costs one query.
        self._loading: dict[UUID, asyncio.Task[UserEntry]] = {}
        sync.on_change(self.clear)

    def clear(self, _version: int = 0) -> None:
        self._users = {}
        self._keys = {}
        self._catalogue = None
        self._loading = {}

    def current(self, user_key: str) -> UserEntry | None:
        """The cached entry for a user id (canonical text), if it may be used right now:
        this process holds its lease, the entry is of the latest version it has
        applied, and none of the user's assignments has expired since it was read."""
        entry = self._users.get(user_key)
        if entry is None:
            return None
        now = clock()
        sync = self._sync
        if entry.version == sync.applied and now < entry.deadline and now < sync.lease_until:
            return entry
        return None

    async def entry(self, user_id: UUID) -> UserEntry:
        key = str(user_id)
        hit = self.current(key)
        if hit is not None:
            return hit
        if not self._sync.trusted():
            if not await self._sync.revalidate():
                return await self._load_user(user_id)
            hit = self.current(key)
            if hit is not None:
                return hit
        # Joining a load is safe only because `clear` forgets loads begun before any
        # version change this process has seen.
        loading = self._loading.get(user_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load_user(user_id))
            self._loading[user_id] = loading
            loading.add_done_callback(lambda task: self._forget_load(user_id, task))
        return await asyncio.shield(loading)

    async def grants(self, user_id: UUID) -> UserGrants:
        return (await self.entry(user_id)).grants

    def _forget_load(self, user_id: UUID, task: asyncio.Task[UserEntry]) -> None:
        if self._loading.get(user_id) is task:
            del self._loading[user_id]
        if not task.cancelled():
            task.exception()  # retrieved: a failed load is reported to its awaiters, not logged

    async def _load_user(self, user_id: UUID) -> UserEntry:
        started = clock()
        async with self._db.reader() as uow:
            snapshot = await uow.roles.grant_snapshot(user_id)
        grants = UserGrants.build(
            user_id,
            exists=snapshot.exists,
            disabled=snapshot.disabled,
            rows=snapshot.rows,
            now=snapshot.db_now,
        )
        self._sync.observe(snapshot.version)
        deadline = (
            math.inf
            if grants.next_expiry is None
            else started + (grants.next_expiry - snapshot.db_now).total_seconds()
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

    def memo(self, secret: str, user_key: str, permission: str) -> Decision | None:
        """A decision already reached, if the key, the user's entry and the lease all still
        hold: the whole check for a peer's repeated question, with no await."""
        if len(secret) > opaque.MAX_OPAQUE_LENGTH:
            return None
        key = self._keys.get(opaque.digest(secret))
        entry = self._users.get(user_key)
        if key is None or entry is None:
            return None
        now = clock()
        applied = self._sync.applied
        if (
            now >= self._sync.lease_until
            or key[0] != applied
            or entry.version != applied
            or now >= entry.deadline
        ):
            return None
        return entry.decisions.get(permission)

    async def catalogue(self) -> tuple[int, frozenset[str]]:
        """(version, every permission a check may grant)."""
        sync = self._sync
        cached = self._catalogue
        if cached is not None and (sync.trusted() or await sync.revalidate()) and cached[0] == sync.applied:
            return cached
        async with self._db.reader() as uow:
            loaded = await uow.roles.catalogue()
        sync.observe(loaded[0])
        if loaded[0] == sync.applied:
            self._catalogue = loaded
        return loaded

    async def service_caller(self, secret: str) -> CheckCaller:
        if len(secret) > opaque.MAX_OPAQUE_LENGTH:
            raise ServiceKeyInvalid()
        digest = opaque.digest(secret)
        sync = self._sync
        cached = self._keys.get(digest)
        if cached is not None:
            if cached[0] == sync.applied and clock() < sync.lease_until:
                return cached[1]
            if await sync.revalidate() and cached[0] == sync.applied:
                return cached[1]
        async with self._db.reader() as uow:
            version, key = await uow.service_keys.find_live(digest)
        sync.observe(version)
        if key is None:
            raise ServiceKeyInvalid()
        caller = CheckCaller(service=key.name)
        if version == sync.applied:
            self._keys[digest] = (version, caller)
        return caller


class _SubjectInvalid(Exception):
    def __init__(self, reason: DecisionReason) -> None:
        self.reason = reason


class AuthzService:
    def __init__(self, cache: PermissionCache, tokens: TokenService) -> None:
        self._cache = cache
        self._tokens = tokens
        self.checks = 0
        self.allowed = 0

    async def caller(self, credential: Credential) -> CheckCaller:
        if isinstance(credential, CheckCaller):
            return credential
        if not credential:
            raise TokenMissing("a service key or an access token is required")
        if credential.startswith(SERVICE_KEY_PREFIX):
            return await self._cache.service_caller(credential)
        principal = await self._tokens.authenticate(credential)
        return CheckCaller(user_id=principal.user_id)

    def cached(self, credential: Credential, user_id: str, permission: str) -> Decision | None:
        """The common case answered from memory: a peer's service key asking again about a
        user id and a permission it has asked about before. None: call `check`."""
        if not isinstance(credential, str) or not user_id or not credential.startswith(SERVICE_KEY_PREFIX):
            return None
        decision = self._cache.memo(credential, user_id, permission)
        if decision is not None:
            self._count(decision)
        return decision

    async def check(self, credential: Credential, subject: Subject, permission: str) -> Decision:
        caller = await self.caller(credential)
        if caller.service is not None and subject.user_id and not subject.access_token:
            # The common case: a peer asks about a user it has asked about before.
            entry = self._cache.current(subject.user_id)
            if entry is not None:
                known = entry.decisions.get(permission)
                if known is not None:
                    return self._count(known)
        validate_permission(permission)
        try:
            user_id = await self._subject(caller, subject, strict=True)
        except _SubjectInvalid as invalid:
            return self._count(Decision(permission, False, invalid.reason))
        return self._count(await self._decide(await self._cache.entry(user_id), permission))

    async def check_many(self, credential: Credential, checks: list[PermissionCheck]) -> list[Decision]:
        if len(checks) > MAX_BATCH_CHECKS:
            raise InvalidArgument(
                "checks", f"at most {MAX_BATCH_CHECKS} checks per call", reason="TOO_MANY_ITEMS"
            )
        caller = await self.caller(credential)
        # Each distinct subject is resolved (and its grants read) once per batch.
        resolved: dict[Subject, UserEntry | DecisionReason] = {}
        for item in checks:
            if item.subject not in resolved:
                try:
                    user_id = await self._subject(caller, item.subject, strict=False)
                except _SubjectInvalid as invalid:
                    resolved[item.subject] = invalid.reason
                else:
                    resolved[item.subject] = await self._cache.entry(user_id)
        decisions: list[Decision] = []
        for item in checks:
            target = resolved[item.subject]
            if not is_valid_permission(item.permission):
                decision = Decision(item.permission, False, DecisionReason.PERMISSION_INVALID)
            elif isinstance(target, DecisionReason):
                decision = Decision(item.permission, False, target)
            else:
                decision = await self._decide(target, item.permission)
            decisions.append(self._count(decision))
        return decisions

    async def list_permissions(self, credential: Credential, subject: Subject) -> list[EffectivePermission]:
        caller = await self.caller(credential)
        try:
            user_id = await self._subject(caller, subject, strict=True)
        except _SubjectInvalid as invalid:
            if invalid.reason is DecisionReason.TOKEN_INVALID:
                raise Unauthenticated(
                    "the subject's access token is invalid", reason="TOKEN_INVALID"
                ) from None
            raise NotFound("no such user", reason="USER_NOT_FOUND") from None
        grants = await self._cache.grants(user_id)
        if not grants.exists:
            raise NotFound("no such user", reason="USER_NOT_FOUND")
        return grants.effective()

    async def _decide(self, entry: UserEntry, permission: str) -> Decision:
        known = entry.decisions.get(permission)
        if known is not None:
            return known
        grants = entry.grants
        if not grants.exists:
            return Decision(permission, False, DecisionReason.USER_UNKNOWN)
        version, catalogue = await self._cache.catalogue()
        decision = grants.decide(permission, catalogue)
        # Memoised only when grants and catalogue are of the same version.
        if entry.cached and version == entry.version and len(entry.decisions) < _MAX_MEMO_PER_USER:
            entry.decisions[permission] = decision
        return decision

    async def _subject(self, caller: CheckCaller, subject: Subject, *, strict: bool) -> UUID:
        """The user a subject names. Malformed input is INVALID_ARGUMENT for a single
        check (strict) and an item-level answer in a batch."""
        if subject.access_token:
            try:
                user_id = (await self._tokens.validate(subject.access_token)).subject
            except Unauthenticated:
                raise _SubjectInvalid(DecisionReason.TOKEN_INVALID) from None
        elif subject.user_id:
            try:
                user_id = UUID(subject.user_id)
            except ValueError:
                if strict:
                    raise InvalidArgument("subject.user_id", "subject.user_id must be a UUID") from None
                raise _SubjectInvalid(DecisionReason.USER_UNKNOWN) from None
        else:
            if strict:
                raise InvalidArgument("subject", "subject (user_id or access_token) is required")
            raise _SubjectInvalid(DecisionReason.USER_UNKNOWN)
        if caller.user_id is not None and caller.user_id != user_id:
            raise PermissionDenied("a user may only ask about themself")
        return user_id

    def _count(self, decision: Decision) -> Decision:
        self.checks += 1
        if decision.allowed:
            self.allowed += 1
        return decision
