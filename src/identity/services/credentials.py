"""The one password check: for a login, and for every re-authentication of a signed-in
caller (ChangePassword, ChangeLogin, and the MFA settings).

A re-authentication is treated like a login attempt, because a stolen access token
must not become a free password oracle. Every attempt, in this order:

1. is throttled per account and per client address (Redis windows), before anything
   else, so a throttled attempt costs no hash and counts no failure;
2. counts one more consecutive failure on the user row *before* the hash is checked,
   so parallel guesses cannot exceed the durable limit (IDENTITY_MAX_FAILED_LOGINS);
3. is refused while that count is over the limit (the account is locked);
4. checks the hash (a dummy hash for unknown logins: same work, same answer);
5. is recorded in the login history when it fails, and resets the count when it succeeds.

A signed-in caller is looked up once, by the user id of its token (never by login,
which another call may be changing), and a wrong password answers PASSWORD_INCORRECT
on the named field rather than UNAUTHENTICATED: their session is fine."""

from __future__ import annotations

from uuid import UUID

from identity.domain.clock import Clock
from identity.domain.errors import (
    AccountDisabled,
    AccountLocked,
    DomainError,
    InvalidArgument,
    InvalidCredentials,
    PasswordIncorrect,
    Reason,
    Throttled,
)
from identity.domain.logins import canonical_login
from identity.domain.models import ClientInfo, Credentials, LoginOutcome, Principal
from identity.domain.observer import NOOP, Observer
from identity.domain.passwords import MAX_PASSWORD_LENGTH, normalize_password
from identity.security.passwords import PasswordHasher
from identity.services.throttle import LoginThrottle
from identity.store.database import Database

LOCKOUT_RETRY_AFTER_SECONDS = 3600


def require_password_field(raw: str, field: str) -> str:
    if not raw:
        raise InvalidArgument(field, f"{field} is required")
    if len(raw) > MAX_PASSWORD_LENGTH * 4:
        raise InvalidArgument(field, f"{field} is too long", reason=Reason.PASSWORD_TOO_LONG)
    return normalize_password(raw)


class CredentialCheck:
    def __init__(
        self,
        db: Database,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        clock: Clock,
        *,
        max_failed_logins: int,
        observer: Observer = NOOP,
    ) -> None:
        self._db = db
        self._hasher = hasher
        self._throttle = throttle
        self._clock = clock
        self._max_failed_logins = max_failed_logins
        self._observer = observer

    async def by_login(self, login: str, raw_password: str, client: ClientInfo) -> Credentials:
        """The credentials of the account `login` names, if `raw_password` is its password."""
        if not login.strip():
            raise InvalidArgument("login", "login is required")
        password = require_password_field(raw_password, "password")
        try:
            canonical = canonical_login(login)
        except InvalidArgument:
            # No account can have this login; answer exactly as for a wrong password.
            await self._hasher.verify(password, None)
            raise InvalidCredentials() from None
        try:
            await self._throttle.count_attempt(f"acct:{canonical}", client.ip)
        except Throttled:
            async with self._db.reader() as uow:
                user = await uow.users.get_by_login(canonical)
            await self._record(user.id if user else None, None, LoginOutcome.THROTTLED, client)
            raise
        async with self._db.transaction() as uow:
            counted = await uow.users.count_failed_attempt(login_canonical=canonical)
        return await self._check(counted, password, client, None, InvalidCredentials())

    async def by_user(
        self, principal: Principal, raw_password: str, field: str, client: ClientInfo
    ) -> Credentials:
        """The signed-in caller's credentials, if `raw_password` (from request field
        `field`) is their password."""
        password = require_password_field(raw_password, field)
        try:
            await self._throttle.count_attempt(f"user:{principal.user_id}", client.ip)
        except Throttled:
            await self._record(principal.user_id, principal.session_id, LoginOutcome.THROTTLED, client)
            raise
        async with self._db.transaction() as uow:
            counted = await uow.users.count_failed_attempt(user_id=principal.user_id)
        if counted is None:
            # The account is gone; the session that named it can be of no use either.
            raise InvalidCredentials()
        return await self._check(counted, password, client, principal.session_id, PasswordIncorrect(field))

    async def _check(
        self,
        counted: Credentials | None,
        password: str,
        client: ClientInfo,
        session_id: UUID | None,
        wrong: DomainError,
    ) -> Credentials:
        user_id = counted.user.id if counted else None
        if counted is not None and counted.failed_logins > self._max_failed_logins:
            if counted.failed_logins == self._max_failed_logins + 1:  # the attempt that locked it
                self._observer.account_locked()
            await self._record(user_id, session_id, LoginOutcome.LOCKED_OUT, client)
            raise AccountLocked(retry_after_seconds=LOCKOUT_RETRY_AFTER_SECONDS)
        matched = await self._hasher.verify(password, counted.password_hash if counted else None)
        if counted is None or not matched:
            await self._record(user_id, session_id, LoginOutcome.BAD_CREDENTIALS, client)
            raise wrong
        if counted.user.disabled_at is not None:
            await self._record(user_id, session_id, LoginOutcome.ACCOUNT_DISABLED, client)
            raise AccountDisabled()
        async with self._db.transaction() as uow:
            await uow.users.reset_failed_attempts(counted.user.id)
        self._observer.password_check(LoginOutcome.SUCCESS, reauthentication=session_id is not None)
        return counted

    async def _record(
        self, user_id: UUID | None, session_id: UUID | None, outcome: LoginOutcome, client: ClientInfo
    ) -> None:
        self._observer.password_check(outcome, reauthentication=session_id is not None)
        async with self._db.transaction() as uow:
            await uow.login_history.record(
                user_id=user_id,
                outcome=outcome,
                ip=client.ip,
                user_agent=client.user_agent,
                session_id=session_id,
                at=self._clock.now(),
            )
