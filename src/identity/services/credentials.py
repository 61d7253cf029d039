"""The one password check: for a login, and for every re-authentication of a signed-in
caller (ChangePassword, ChangeLogin, and the MFA settings).

A re-authentication is treated like a login attempt, because a stolen access token
must not become a free password oracle. Every attempt, in this order:

1. is throttled per account and per client address (Redis windows), before anything
   else, so a throttled attempt costs no hash and counts no failure;
2. reserves one check on the user row *before* the hash is checked: refused while the
   consecutive failures plus the checks in flight reach IDENTITY_MAX_FAILED_LOGINS, so
   parallel guesses cannot exceed the durable limit;
3. a refused reservation is a lockout when the failures alone reach the limit, and
   otherwise a retryable throttle (a burst of attempts, correct ones included, never
   locks an account: only a checked wrong password counts as a failure);
4. checks the hash (a dummy hash for unknown logins: same work, same answer);
5. is recorded in the login history unless it succeeds (the session records that);
   the reservation then becomes a failure, or resets the count on success.

A locked account answers a login exactly as an unknown login does (INVALID_CREDENTIALS,
after the same dummy-hash work), so the lockout does not tell which logins exist; its
owner sees LOCKED_OUT in their login history and an operator in `identity users
status`. A signed-in caller (who knows their account exists) is told ACCOUNT_LOCKED.

A signed-in caller is looked up once, by the user id of its token (never by login,
which another call may be changing), and a wrong password answers PASSWORD_INCORRECT
on the named field rather than UNAUTHENTICATED: their session is fine."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
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
from identity.domain.models import AttemptSlot, ClientInfo, Credentials, LoginOutcome, Principal
from identity.domain.observer import NOOP, Observer
from identity.domain.passwords import MAX_PASSWORD_LENGTH, normalize_password
from identity.security.passwords import PasswordHasher
from identity.services.throttle import LoginThrottle
from identity.store.database import Database
from identity.store.uow import UnitOfWork

LOCKOUT_RETRY_AFTER_SECONDS = 3600
# A check whose reservation found every slot in flight is told to come back after this.
BUSY_RETRY_AFTER_SECONDS = 1
# A reservation left by a process that died mid-check frees its slot after this long
# (a check takes well under a second, queueing for the hash pool included).
RESERVATION_HOLD_SECONDS = 60


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
        async with self._db.reader() as uow:  # one statement: atomic on its own
            slot = await uow.users.reserve_attempt(login_canonical=canonical, **self._reservation())
        if slot is not None and not slot.reserved and self._locked(slot):
            # Answered like an unknown login, after the same work: the lockout names no account.
            await self._hasher.verify(password, None)
            await self._record(slot.credentials.user.id, None, LoginOutcome.LOCKED_OUT, client)
            raise InvalidCredentials()
        return await self._check(slot, password, client, None, InvalidCredentials())

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
        async with self._db.reader() as uow:
            slot = await uow.users.reserve_attempt(user_id=principal.user_id, **self._reservation())
        if slot is None:
            # The account is gone; the session that named it can be of no use either.
            raise InvalidCredentials()
        if not slot.reserved and self._locked(slot):
            await self._record(principal.user_id, principal.session_id, LoginOutcome.LOCKED_OUT, client)
            raise AccountLocked(retry_after_seconds=LOCKOUT_RETRY_AFTER_SECONDS)
        return await self._check(slot, password, client, principal.session_id, PasswordIncorrect(field))

    def _reservation(self) -> dict[str, Any]:
        return {
            "limit": self._max_failed_logins,
            "now": self._clock.now(),
            "hold": timedelta(seconds=RESERVATION_HOLD_SECONDS),
        }

    def _locked(self, slot: AttemptSlot) -> bool:
        return slot.credentials.failed_logins >= self._max_failed_logins

    async def _check(
        self,
        slot: AttemptSlot | None,
        password: str,
        client: ClientInfo,
        session_id: UUID | None,
        wrong: DomainError,
    ) -> Credentials:
        if slot is None:
            await self._hasher.verify(password, None)
            await self._record(None, session_id, LoginOutcome.BAD_CREDENTIALS, client)
            raise wrong
        user_id = slot.credentials.user.id
        if not slot.reserved:
            # Every slot is taken by checks still in flight: not a failure, try again shortly.
            await self._record(user_id, session_id, LoginOutcome.THROTTLED, client)
            raise Throttled(BUSY_RETRY_AFTER_SECONDS)
        try:
            matched = await self._hasher.verify(password, slot.credentials.password_hash)
        except BaseException:
            # Cancelled mid-check: free the slot now rather than when it lapses.
            async with self._db.reader() as uow:
                await uow.users.settle_attempt(user_id, None)
            raise
        if not matched:
            await self._settle_and_record(user_id, False, session_id, LoginOutcome.BAD_CREDENTIALS, client)
            raise wrong
        if slot.credentials.user.disabled_at is not None:
            await self._settle_and_record(user_id, None, session_id, LoginOutcome.ACCOUNT_DISABLED, client)
            raise AccountDisabled()
        async with self._db.reader() as uow:
            await uow.users.settle_attempt(user_id, True)
        self._observer.password_check(LoginOutcome.SUCCESS, reauthentication=session_id is not None)
        return slot.credentials

    async def _record(
        self, user_id: UUID | None, session_id: UUID | None, outcome: LoginOutcome, client: ClientInfo
    ) -> None:
        async with self._db.transaction() as uow:
            await self._write(uow, user_id, session_id, outcome, client)

    async def _settle_and_record(
        self,
        user_id: UUID,
        matched: bool | None,
        session_id: UUID | None,
        outcome: LoginOutcome,
        client: ClientInfo,
    ) -> None:
        """Ends the attempt's reservation (see UserRepository.settle_attempt) and records
        it, in one transaction."""
        async with self._db.transaction() as uow:
            failures = await uow.users.settle_attempt(user_id, matched)
            await self._write(uow, user_id, session_id, outcome, client)
        if matched is False and failures == self._max_failed_logins:  # this failure locked it
            self._observer.account_locked()

    async def _write(
        self,
        uow: UnitOfWork,
        user_id: UUID | None,
        session_id: UUID | None,
        outcome: LoginOutcome,
        client: ClientInfo,
    ) -> None:
        await uow.login_history.record(
            user_id=user_id,
            outcome=outcome,
            ip=client.ip,
            user_agent=client.user_agent,
            session_id=session_id,
            at=self._clock.now(),
        )
        self._observer.password_check(outcome, reauthentication=session_id is not None)
