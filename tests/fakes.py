"""In-memory stand-ins for the store, for the fast tier: a unit of work whose
repositories keep rows in dictionaries, with transactions that commit at the end of
the block and roll back on an exception, and a Redis rate-limit window on the
stepped clock. They mirror what the SQL does for the use cases tested on them;
everything that claims to test PostgreSQL or Redis uses the real ones."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from identity.domain.clock import SteppedClock
from identity.domain.errors import LoginTaken
from identity.domain.models import AttemptSlot, Credentials, LoginEvent, LoginOutcome, Session, User
from identity.domain.observer import NOOP, NoopObserver, Observer, RefreshOutcome, ThrottleScope
from identity.domain.paging import HistoryCursor, SessionCursor, TimeRange
from identity.domain.permissions import (
    GrantRow,
    HeldRole,
    Role,
    RoleAssignment,
    RoleGrants,
    RoleName,
    ServiceKey,
)
from identity.domain.rbac_changes import LoggedChange, RbacChanges, readable, summarise
from identity.security.passwords import PasswordHasher
from identity.store.keys import StoredKey
from identity.store.roles import GrantSnapshot, HeldRoles
from identity.store.sessions import RefreshTokenState, Rotation


@dataclass
class _UserRow:
    user: User
    password_hash: bytes
    failed_logins: int = 0
    pending: int = 0
    pending_until: datetime | None = None


@dataclass
class _TokenRow:
    session_id: uuid.UUID
    rotated_at: datetime | None = None
    replaced_by: bytes | None = None


@dataclass
class State:
    users: dict[uuid.UUID, _UserRow] = field(default_factory=dict)
    sessions: dict[uuid.UUID, Session] = field(default_factory=dict)
    tokens: dict[bytes, _TokenRow] = field(default_factory=dict)
    # (owner, event): the events are records without a user id.
    history: list[tuple[uuid.UUID | None, LoginEvent]] = field(default_factory=list)
    keys: dict[str, StoredKey] = field(default_factory=dict)
    tickets_deleted_for: list[uuid.UUID] = field(default_factory=list)
    rbac: RbacState = field(default_factory=lambda: RbacState())


@dataclass
class RbacState:
    """Roles, assignments, service keys and leases; `version` is rbac_version, bumped by
    every write as the triggers of migration 0003 bump it, and `changes` the change log
    the triggers of migration 0008 write with each bump."""

    version: int = 1
    roles: dict[uuid.UUID, Role] = field(default_factory=dict)
    # (user, role) -> expiry
    assignments: dict[tuple[uuid.UUID, uuid.UUID], datetime | None] = field(default_factory=dict)
    service_keys: dict[bytes, ServiceKey] = field(default_factory=dict)
    # lease id -> (acked version, expires at by the clock's monotonic reading)
    leases: dict[uuid.UUID, tuple[int, float]] = field(default_factory=dict)
    # lease id -> (host, pid) of the process holding it
    lease_owners: dict[uuid.UUID, tuple[str, int]] = field(default_factory=dict)
    changes: list[LoggedChange] = field(default_factory=list)
    snapshots: int = 0
    role_reads: int = 0
    key_reads: int = 0
    catalogue_reads: int = 0


class FakeUsers:
    def __init__(self, state: State) -> None:
        self._s = state

    def _by_login(self, login_canonical: str) -> _UserRow | None:
        return next((r for r in self._s.users.values() if r.user.login_canonical == login_canonical), None)

    async def create(
        self, user_id: uuid.UUID, login: str, login_canonical: str, email: str | None, password_hash: bytes
    ) -> User:
        if self._by_login(login_canonical) is not None:
            raise LoginTaken()
        user = User(user_id, login, login_canonical, email, datetime.now().astimezone())
        self._s.users[user_id] = _UserRow(user, password_hash)
        return user

    async def get(self, user_id: uuid.UUID) -> User | None:
        row = self._s.users.get(user_id)
        return None if row is None else row.user

    async def get_by_login(self, login_canonical: str) -> User | None:
        row = self._by_login(login_canonical)
        return None if row is None else row.user

    async def reserve_attempt(
        self,
        *,
        login_canonical: str | None = None,
        user_id: uuid.UUID | None = None,
        limit: int,
        now: datetime,
        hold: timedelta,
    ) -> AttemptSlot | None:
        row = self._s.users.get(user_id) if user_id is not None else self._by_login(login_canonical or "")
        if row is None:
            return None
        pending = row.pending if row.pending_until is not None and row.pending_until > now else 0
        reserved = row.failed_logins + pending < limit
        if reserved:
            row.pending, row.pending_until = pending + 1, now + hold
        return AttemptSlot(Credentials(row.user, row.password_hash, row.failed_logins), reserved)

    async def settle_attempt(self, user_id: uuid.UUID, outcome: bool | None) -> int | None:
        row = self._s.users[user_id]
        row.pending = max(row.pending - 1, 0)
        if outcome is not None:
            row.failed_logins = 0 if outcome else row.failed_logins + 1
        return row.failed_logins

    async def failed_logins(self, user_id: uuid.UUID) -> int | None:
        row = self._s.users.get(user_id)
        return None if row is None else row.failed_logins

    async def unlock(self, user_id: uuid.UUID) -> None:
        self._s.users[user_id].failed_logins = 0
        self._s.users[user_id].pending = 0

    async def set_password(self, user_id: uuid.UUID, password_hash: bytes) -> None:
        self._s.users[user_id].password_hash = password_hash

    async def set_login(self, user_id: uuid.UUID, login: str, login_canonical: str) -> None:
        taken = self._by_login(login_canonical)
        if taken is not None and taken.user.id != user_id:
            raise LoginTaken()
        row = self._s.users[user_id]
        row.user = replace(row.user, login=login, login_canonical=login_canonical)

    async def set_disabled(self, user_id: uuid.UUID, disabled: bool) -> None:
        row = self._s.users[user_id]
        row.user = replace(row.user, disabled_at=datetime.now().astimezone() if disabled else None)


class FakeSessions:
    def __init__(self, state: State) -> None:
        self._s = state

    async def create(
        self,
        session_id: uuid.UUID,
        user_id: uuid.UUID,
        *,
        now: datetime,
        expires_at: datetime,
        ip: str | None,
        user_agent: str,
        amr: tuple[str, ...] = ("pwd",),
        auth_time: datetime | None = None,
    ) -> Session:
        session = Session(
            session_id, user_id, now, now, expires_at, ip, user_agent, amr=amr, auth_time=auth_time or now
        )
        self._s.sessions[session_id] = session
        return session

    async def get(self, session_id: uuid.UUID) -> Session | None:
        return self._s.sessions.get(session_id)

    get_for_update = get

    async def touch(self, session_id: uuid.UUID, now: datetime) -> None:
        self._s.sessions[session_id] = replace(self._s.sessions[session_id], last_used_at=now)

    async def revoke(self, session_id: uuid.UUID, reason: str) -> bool:
        session = self._s.sessions.get(session_id)
        if session is None or session.revoked_at is not None:
            return False
        self._s.sessions[session_id] = replace(
            session, revoked_at=datetime.now().astimezone(), revoked_reason=reason
        )
        return True

    async def revoke_all_for_user(
        self, user_id: uuid.UUID, reason: str, *, except_session: uuid.UUID | None = None
    ) -> int:
        ids = [s.id for s in self._s.sessions.values() if s.user_id == user_id and s.id != except_session]
        return sum([await self.revoke(i, reason) for i in ids])

    async def add_refresh_token(self, token_hash: bytes, session_id: uuid.UUID) -> None:
        self._s.tokens[token_hash] = _TokenRow(session_id)

    async def rotate_refresh_token(self, token_hash: bytes, now: datetime) -> uuid.UUID | None:
        row = self._s.tokens.get(token_hash)
        if row is None or row.rotated_at is not None:
            return None
        row.rotated_at = now
        return row.session_id

    async def rotate_live_refresh_token(
        self, token_hash: bytes, successor_hash: bytes, *, now: datetime, idle_ttl: timedelta
    ) -> Rotation | None:
        """What migration 0005's rotate_refresh_token does, in memory."""
        row = self._s.tokens.get(token_hash)
        if row is None or row.rotated_at is not None:
            return None
        session = self._s.sessions.get(row.session_id)
        if session is None:
            return None
        live = (
            session.revoked_at is None and session.expires_at > now and session.last_used_at + idle_ttl > now
        )
        if live:
            row.rotated_at, row.replaced_by = now, successor_hash
            self._s.tokens[successor_hash] = _TokenRow(row.session_id)
            self._s.sessions[session.id] = replace(session, last_used_at=now)
        return Rotation(live, session)

    async def refresh_token_state(self, token_hash: bytes) -> RefreshTokenState | None:
        row = self._s.tokens.get(token_hash)
        return None if row is None else RefreshTokenState(row.session_id, row.rotated_at, row.replaced_by)

    lock_refresh_token = refresh_token_state

    async def set_successor(self, token_hash: bytes, successor_hash: bytes) -> None:
        self._s.tokens[token_hash].replaced_by = successor_hash

    async def retire_unused_refresh_token(self, token_hash: bytes, now: datetime) -> bool:
        return await self.rotate_refresh_token(token_hash, now) is not None

    async def list_live_for_user(
        self,
        user_id: uuid.UUID,
        *,
        now: datetime,
        idle_ttl: timedelta,
        limit: int,
        after: SessionCursor | None = None,
    ) -> list[Session]:
        live = [
            s
            for s in self._s.sessions.values()
            if s.user_id == user_id
            and s.revoked_at is None
            and s.expires_at > now
            and s.last_used_at > now - idle_ttl
            and (after is None or (s.created_at, s.id) < (after.created_at, after.id))
        ]
        live.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        return live[:limit]


class FakeHistory:
    def __init__(self, state: State) -> None:
        self._s = state

    async def record(
        self,
        *,
        user_id: uuid.UUID | None,
        outcome: LoginOutcome,
        ip: str | None,
        user_agent: str,
        session_id: uuid.UUID | None = None,
        at: datetime,
    ) -> None:
        event = LoginEvent(at, outcome, ip, user_agent, session_id, len(self._s.history) + 1)
        self._s.history.append((user_id, event))

    def of(self, user_id: uuid.UUID | None) -> list[LoginEvent]:
        return [event for owner, event in self._s.history if owner == user_id]

    async def page_for_user(
        self, user_id: uuid.UUID, *, span: TimeRange, after: HistoryCursor | None, limit: int
    ) -> list[LoginEvent]:
        rows = [
            e
            for e in self.of(user_id)
            if (span.start is None or e.login_at >= span.start)
            and (span.end is None or e.login_at < span.end)
            and (after is None or (e.login_at, e.id) < (after.login_at, after.id))
        ]
        rows.sort(key=lambda e: (e.login_at, e.id), reverse=True)
        return rows[:limit]


class FakeSigningKeys:
    def __init__(self, state: State) -> None:
        self._s = state

    async def lock_ring(self) -> None:
        return None

    async def all(self) -> list[StoredKey]:
        return list(self._s.keys.values())

    async def published(self, now: datetime) -> list[StoredKey]:
        return [
            k
            for k in self._s.keys.values()
            if k.state in ("next", "active") or (k.publish_until is not None and k.publish_until > now)
        ]

    async def insert(
        self, kid: str, state: str, private_key_encrypted: bytes, public_jwk: dict[str, Any]
    ) -> None:
        now = datetime.now().astimezone()
        self._s.keys[kid] = StoredKey(
            kid, state, private_key_encrypted, public_jwk, now, now if state == "active" else None, None
        )

    async def retire_active(self, publish_until: datetime) -> None:
        for kid, key in list(self._s.keys.items()):
            if key.state == "active":
                self._s.keys[kid] = replace(key, state="retired", publish_until=publish_until)

    async def promote_next(self) -> bool:
        for kid, key in list(self._s.keys.items()):
            if key.state == "next":
                self._s.keys[kid] = replace(key, state="active")
                return True
        return False


class FakeMfaTickets:
    """Only what the password-based use cases touch: no MFA flow runs on the fakes."""

    def __init__(self, state: State) -> None:
        self._s = state

    async def delete_for_user(self, user_id: uuid.UUID) -> None:
        self._s.tickets_deleted_for.append(user_id)


class FakeRoles:
    """RoleRepository over RbacState: what the escalation rule and the permission cache read."""

    def __init__(self, state: State) -> None:
        self._s = state
        self._r = state.rbac

    def _bump(self, *touched: tuple[str, uuid.UUID | None]) -> None:
        """One version, and its change log rows: (kind, role or user id)."""
        self._r.version += 1
        for kind, some_id in touched or (("none", None),):
            user_id = some_id if kind == "user" else None
            role_id = some_id if kind in ("role", "members") else None
            self._r.changes.append(LoggedChange(self._r.version, kind, role_id, user_id))

    async def lock_for_write(self) -> int:
        return self._r.version

    async def version(self) -> int:
        return self._r.version

    async def get(self, role_id: uuid.UUID) -> Role | None:
        return self._r.roles.get(role_id)

    async def get_by_name(self, canonical: str) -> Role | None:
        return next((r for r in self._r.roles.values() if r.name_canonical == canonical), None)

    async def insert(self, role_id: uuid.UUID, name: RoleName, description: str) -> None:
        now = datetime.now().astimezone()
        self._r.roles[role_id] = Role(role_id, name.display, name.canonical, description, (), False, now, now)
        self._bump(("role", role_id))

    async def update(self, role_id: uuid.UUID, name: RoleName | None, description: str | None) -> None:
        role = self._r.roles[role_id]
        if name is not None:
            role = replace(role, name=name.display, name_canonical=name.canonical)
        if description is not None:
            role = replace(role, description=description)
        self._r.roles[role_id] = role
        self._bump(("role", role_id))

    async def set_permissions(self, role_id: uuid.UUID, names: frozenset[str]) -> None:
        self._r.roles[role_id] = replace(self._r.roles[role_id], permissions=tuple(sorted(names)))
        self._bump(("role", role_id), ("catalogue", None))

    async def prune_catalogue(self, candidates: Any) -> None:
        return None

    async def delete(self, role_id: uuid.UUID) -> bool:
        holders = [("user", user) for user, role in self._r.assignments if role == role_id]
        self._r.assignments = {k: v for k, v in self._r.assignments.items() if k[1] != role_id}
        self._bump(("role", role_id), *holders)
        return self._r.roles.pop(role_id, None) is not None

    async def live_assignment_count(self, role_id: uuid.UUID, now: datetime) -> int:
        return sum(1 for (_, r), e in self._r.assignments.items() if r == role_id and (e is None or e > now))

    async def assign(
        self, user_id: uuid.UUID, role_id: uuid.UUID, expires_at: datetime | None, by: uuid.UUID | None
    ) -> RoleAssignment:
        self._r.assignments[(user_id, role_id)] = expires_at
        self._bump(("user", user_id))
        role = self._r.roles[role_id]
        return RoleAssignment(user_id, role_id, role.name, expires_at, datetime.now().astimezone())

    async def revoke(self, user_id: uuid.UUID, role_id: uuid.UUID) -> bool:
        self._bump(("user", user_id))
        return self._r.assignments.pop((user_id, role_id), "absent") != "absent"

    async def grant_snapshot(self, user_id: uuid.UUID, as_of: datetime) -> GrantSnapshot:
        self._r.snapshots += 1
        await asyncio.sleep(0)  # a query: other tasks run meanwhile
        row = self._s.users.get(user_id)
        rows: list[GrantRow] = []
        for (user, role_id), expires_at in self._r.assignments.items():
            if user != user_id:
                continue
            role = self._r.roles[role_id]
            rows += [GrantRow(role.name, expires_at, p) for p in role.permissions] or [
                GrantRow(role.name, expires_at, None)
            ]
        disabled = row is not None and row.user.disabled_at is not None
        return GrantSnapshot(self._r.version, as_of, row is not None, disabled, rows)

    def _grants(self, role: Role) -> RoleGrants:
        return RoleGrants(role.id, role.name, role.permissions)

    async def held_roles(self, user_id: uuid.UUID) -> HeldRoles:
        self._r.snapshots += 1
        await asyncio.sleep(0)  # a query: other tasks run meanwhile
        row = self._s.users.get(user_id)
        held = [
            HeldRole(self._grants(self._r.roles[role_id]), expires_at)
            for (user, role_id), expires_at in self._r.assignments.items()
            if user == user_id and row is not None
        ]
        disabled = row is not None and row.user.disabled_at is not None
        return HeldRoles(self._r.version, row is not None, disabled, held)

    async def role_grants(self, role_ids: list[uuid.UUID]) -> tuple[int, list[RoleGrants]]:
        self._r.role_reads += 1
        await asyncio.sleep(0)
        return self._r.version, [self._grants(self._r.roles[r]) for r in role_ids if r in self._r.roles]

    async def catalogue(self) -> tuple[int, frozenset[str]]:
        self._r.catalogue_reads += 1
        return self._r.version, frozenset(p for r in self._r.roles.values() for p in r.permissions)


class FakeServiceKeys:
    def __init__(self, state: State) -> None:
        self._r = state.rbac

    async def find_live(self, key_hash: bytes) -> tuple[int, ServiceKey | None]:
        self._r.key_reads += 1
        key = self._r.service_keys.get(key_hash)
        return self._r.version, key if key is not None and key.revoked_at is None else None


class FakeChangeLog:
    """RbacChangeRepository over RbacState.changes."""

    def __init__(self, state: State) -> None:
        self._r = state.rbac
        self.reads = 0

    async def between(self, after: int, upto: int, limit: int) -> list[LoggedChange]:
        self.reads += 1
        return [c for c in self._r.changes if after < c.version <= upto][:limit]


class FakeLeases:
    """RbacLeaseRepository: a renewal commits only with the current version applied;
    expiry on the clock's monotonic reading (PostgreSQL's clock in the real one)."""

    def __init__(self, state: State, clock: SteppedClock | None) -> None:
        self._r = state.rbac
        self._clock = clock or SteppedClock()
        self.renewals = 0

    async def renew(
        self, lease_id: uuid.UUID, applied_version: int, ttl: timedelta, host: str, pid: int
    ) -> tuple[int, bool]:
        self.renewals += 1
        if not isinstance(host, str):
            raise ValueError("null value in column host violates not-null constraint")
        if self._r.version > applied_version:
            return self._r.version, False
        self._r.leases[lease_id] = (applied_version, self._clock.monotonic() + ttl.total_seconds())
        self._r.lease_owners.setdefault(lease_id, (host, pid))  # kept on conflict, as the SQL does
        return self._r.version, True

    async def pending(self, version: int) -> int:
        now = self._clock.monotonic()
        return sum(1 for acked, until in self._r.leases.values() if acked < version and until > now)

    async def release(self, lease_id: uuid.UUID) -> None:
        self._r.leases.pop(lease_id, None)

    async def prune(self, older_than: timedelta) -> None:
        now = self._clock.monotonic()
        self._r.leases = {k: v for k, v in self._r.leases.items() if v[1] >= now - older_than.total_seconds()}


class FakeUnitOfWork:
    def __init__(self, state: State, clock: SteppedClock | None = None) -> None:
        self.state = state
        self.users = FakeUsers(state)
        self.sessions = FakeSessions(state)
        self.login_history = FakeHistory(state)
        self.signing_keys = FakeSigningKeys(state)
        self.mfa_tickets = FakeMfaTickets(state)
        self.roles = FakeRoles(state)
        self.service_keys = FakeServiceKeys(state)
        self.rbac_leases = FakeLeases(state, clock)
        self.rbac_changes = FakeChangeLog(state)


class FakeDatabase:
    """Database's interface over one in-memory State."""

    def __init__(self, clock: SteppedClock | None = None) -> None:
        self.state = State()
        self.transactions = 0
        self.clock = clock
        # Set to an exception to make every unit of work fail as a lost database would.
        self.failure: BaseException | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeUnitOfWork]:
        if self.failure is not None:
            raise self.failure
        # Work on a copy; it becomes the state only if the block completes.
        working = copy.deepcopy(self.state)
        yield FakeUnitOfWork(working, self.clock)
        self.state.__dict__.update(working.__dict__)
        self.transactions += 1

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[FakeUnitOfWork]:
        if self.failure is not None:
            raise self.failure
        yield FakeUnitOfWork(self.state, self.clock)

    def history(self, user_id: uuid.UUID | None) -> list[LoginOutcome]:
        return [e.outcome for e in FakeHistory(self.state).of(user_id)]

    async def ping(self) -> bool:
        return True


class FakeRedis:
    """RedisStore.hit: fixed windows, on the stepped clock."""

    def __init__(self, clock: SteppedClock) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[int, float]] = {}

    async def hit(self, key: str, window_seconds: int) -> tuple[int, int]:
        now = self._clock.monotonic()
        count, ends = self._windows.get(key, (0, now + window_seconds))
        if now >= ends:
            count, ends = 0, now + window_seconds
        self._windows[key] = (count + 1, ends)
        return count + 1, max(int(ends - now), 1)


class CountingHasher(PasswordHasher):
    """The real bcrypt hasher, counting the checks it makes (a dummy-hash check counts too)."""

    def __init__(self, observer: Observer = NOOP) -> None:
        super().__init__(rounds=4, concurrency=2, observer=observer)
        self.verifications = 0

    async def verify(self, password: str, password_hash: bytes | None) -> bool:
        self.verifications += 1
        return await super().verify(password, password_hash)


@dataclass
class FastServices:
    """The auth use cases over the fakes, on a stepped clock."""

    clock: SteppedClock
    db: FakeDatabase
    redis: FakeRedis
    hasher: CountingHasher
    policy: Any
    tokens: Any
    credentials: Any
    auth: Any
    sessions: Any
    account: Any


class RecordingObserver(NoopObserver):
    """The events the services report (what the metrics count), in order."""

    def __init__(self) -> None:
        self.password_checks: list[tuple[LoginOutcome, bool]] = []
        self.refreshes: list[RefreshOutcome] = []
        self.throttles: list[ThrottleScope] = []
        self.lockouts = 0
        self.bcrypt_operations: list[str] = []

    def password_check(self, outcome: LoginOutcome, *, reauthentication: bool) -> None:
        self.password_checks.append((outcome, reauthentication))

    def refresh(self, outcome: RefreshOutcome) -> None:
        self.refreshes.append(outcome)

    def throttled(self, scope: ThrottleScope) -> None:
        self.throttles.append(scope)

    def account_locked(self) -> None:
        self.lockouts += 1

    @contextlib.contextmanager
    def bcrypt(self, operation: str) -> Iterator[None]:
        self.bcrypt_operations.append(operation)
        yield


class FrozenClock(SteppedClock):
    """A clock that moves only when stepped, for tests at an exact boundary."""

    def __init__(self) -> None:
        super().__init__()
        self._base = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._base + self.offset

    def monotonic(self) -> float:
        return 1000.0 + self.offset.total_seconds()


def fast_services(
    keys: dict[str, StoredKey],
    *,
    max_failed_logins: int = 5,
    per_account: int = 10,
    per_ip: int = 1000,
    clock: SteppedClock | None = None,
    observer: Observer = NOOP,
    ended: Any = None,
    **policy: Any,
) -> FastServices:
    """Services wired as the composition root wires them, over a fresh in-memory store
    holding a copy of `keys` (a key ring made once: RSA key generation is slow); `ended`
    is what TokenService reads of EndedSessions (the real one needs a LISTEN channel)."""
    from identity.security.secretbox import SecretBox
    from identity.services.account import AccountService
    from identity.services.auth import AuthService
    from identity.services.credentials import CredentialCheck
    from identity.services.keys import KeyService
    from identity.services.paging import PageTokens
    from identity.services.sessions import SessionService
    from identity.services.throttle import LoginThrottle
    from identity.services.tokens import TokenPolicy, TokenService

    clock = clock or SteppedClock()
    db = FakeDatabase()
    db.state.keys = dict(keys)
    redis = FakeRedis(clock)
    hasher = CountingHasher(observer)
    token_policy = TokenPolicy(
        **{
            "issuer": "identity",
            "audiences": ("cinema",),
            "access_ttl": timedelta(minutes=15),
            "clock_skew": timedelta(seconds=30),
            "session_absolute_ttl": timedelta(days=30),
            "session_idle_ttl": timedelta(days=7),
            **policy,
        }
    )
    key_service = KeyService(
        db,  # type: ignore[arg-type]
        SecretBox(FAST_SECRET, "signing-keys"),
        clock,
        refresh_interval=timedelta(minutes=5),
        retire_grace=timedelta(minutes=20),
    )
    tokens = TokenService(db, key_service, token_policy, clock, ended=ended)  # type: ignore[arg-type]
    throttle = LoginThrottle(
        redis,  # type: ignore[arg-type]
        per_account=per_account,
        per_ip=per_ip,
        window=timedelta(minutes=15),
        observer=observer,
    )
    credentials = CredentialCheck(
        db,  # type: ignore[arg-type]
        hasher,
        throttle,
        clock,
        max_failed_logins=max_failed_logins,
        observer=observer,
    )
    return FastServices(
        clock=clock,
        db=db,
        redis=redis,
        hasher=hasher,
        policy=token_policy,
        tokens=tokens,
        credentials=credentials,
        auth=AuthService(db, hasher, tokens, credentials, clock, observer=observer),  # type: ignore[arg-type]
        sessions=SessionService(db, PageTokens(FAST_SECRET), token_policy, clock),  # type: ignore[arg-type]
        account=AccountService(db, hasher, credentials, token_policy, clock),  # type: ignore[arg-type]
    )


FAST_SECRET = b"fast-tier-secret-key-" + b"k" * 32


_KEY_RING: dict[str, StoredKey] = {}


async def make_key_ring() -> dict[str, StoredKey]:
    """One ring per process (RSA key generation is the slowest step of the fast tier);
    callers get a copy."""
    if not _KEY_RING:
        _KEY_RING.update(await _new_key_ring())
    return dict(_KEY_RING)


async def _new_key_ring() -> dict[str, StoredKey]:
    from identity.security.secretbox import SecretBox
    from identity.services.keys import KeyService

    db = FakeDatabase()
    ring = KeyService(
        db,  # type: ignore[arg-type]
        SecretBox(FAST_SECRET, "signing-keys"),
        SteppedClock(),
        refresh_interval=timedelta(minutes=5),
        retire_grace=timedelta(minutes=20),
    )
    await ring.ensure_ring()
    return db.state.keys


class FakeSync:
    """RbacSync as the permission cache and the role service see it: an applied version
    that only grows, and a lease the test grants or lets lapse on the stepped clock.
    A version observed is applied at once, with what `db`'s change log says it touched
    (everything without a `db`, or for a version the log does not name)."""

    def __init__(self, clock: SteppedClock, db: FakeDatabase | None = None) -> None:
        self._clock = clock
        self._db = db
        self.applied = -1
        self.seen = -1
        self.lease_until = 0.0
        self.listening = True
        self.revalidations = 0
        self._on_change: list[Any] = []

    def grant_lease(self, seconds: float = 3.0) -> None:
        self.lease_until = self._clock.monotonic() + seconds

    def on_change(self, callback: Any) -> None:
        self._on_change.append(callback)

    def trusted(self) -> bool:
        return self._clock.monotonic() < self.lease_until

    async def revalidate(self) -> bool:
        self.revalidations += 1
        if self.listening:
            self.grant_lease()
        return self.trusted()

    def observe(self, version: int) -> None:
        self.seen = max(self.seen, version)
        if version > self.applied:
            after = self.applied
            rows = self._db.state.rbac.changes if self._db is not None and readable(after, version) else []
            changes = (
                summarise(after, version, [c for c in rows if after < c.version <= version])
                if rows
                else RbacChanges.all_at(version)
            )
            for callback in self._on_change:
                callback(changes)
            self.applied = version

    async def wait_applied(self, version: int) -> None:
        self.observe(version)


class FakeListenConnection:
    """RbacListenConnection: notified versions arrive through `notify`; `lose` makes the
    connection fail as a dropped one does."""

    def __init__(self, db: FakeDatabase) -> None:
        self.leases = FakeLeases(db.state, db.clock)
        self.changes = FakeChangeLog(db.state)
        self._versions: asyncio.Queue[int | BaseException] = asyncio.Queue()

    def notify(self, version: int) -> None:
        self._versions.put_nowait(version)

    def lose(self) -> None:
        from identity.domain.errors import BackendUnavailable

        self._versions.put_nowait(BackendUnavailable())

    async def next_version(self, wait_seconds: float) -> int | None:
        try:
            item = await asyncio.wait_for(self._versions.get(), max(0.0, wait_seconds))
        except TimeoutError:
            return None
        if isinstance(item, BaseException):
            raise item
        return item


class FakeChannel:
    """RbacChannel over the fake database; `down` refuses new connections."""

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db
        self.down = False
        self.connections: list[FakeListenConnection] = []

    @property
    def current(self) -> FakeListenConnection:
        return self.connections[-1]

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[FakeListenConnection]:
        from identity.domain.errors import BackendUnavailable

        if self.down:
            raise BackendUnavailable()
        connection = FakeListenConnection(self._db)
        self.connections.append(connection)
        yield connection
