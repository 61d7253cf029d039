"""Re-authentication for account changes (SECURITY.md: changing the password needs
the current one; changing the login needs the password).

A confirmation is treated like a login attempt, because a stolen access token must
not become a free password oracle: it is throttled per account and per address,
counted against the consecutive-failure lockout before the hash is checked, and a
failure is recorded in the user's login history."""

from __future__ import annotations

from identity.domain.errors import InvalidCredentials, Throttled
from identity.domain.models import ClientInfo, Credentials, LoginOutcome, Principal
from identity.security.passwords import PasswordHasher
from identity.services.auth import AccountDisabled, AccountLocked, require_password_field
from identity.services.throttle import LoginThrottle
from identity.store.database import Database


class PasswordConfirmation:
    def __init__(
        self, db: Database, hasher: PasswordHasher, throttle: LoginThrottle, *, max_failed_logins: int
    ) -> None:
        self._db = db
        self._hasher = hasher
        self._throttle = throttle
        self._max_failed_logins = max_failed_logins

    async def confirm(
        self, principal: Principal, raw_password: str, field: str, client: ClientInfo
    ) -> Credentials:
        """The caller's credentials if raw_password is their password; raises otherwise."""
        password = require_password_field(raw_password, field)
        async with self._db.reader() as uow:
            user = await uow.users.get(principal.user_id)
        if user is None:
            raise InvalidCredentials()
        try:
            await self._throttle.count_attempt(user.login_canonical, client.ip)
        except Throttled:
            await self._record(principal, LoginOutcome.THROTTLED, client)
            raise

        async with self._db.transaction() as uow:
            credentials = await uow.users.count_failed_attempt(user.login_canonical)
        if credentials is None or credentials.user.id != principal.user_id:
            # The login changed between the two reads; the caller may simply retry.
            raise InvalidCredentials()
        if credentials.failed_logins > self._max_failed_logins:
            await self._record(principal, LoginOutcome.LOCKED_OUT, client)
            raise AccountLocked(retry_after_seconds=3600)
        if not await self._hasher.verify(password, credentials.password_hash):
            await self._record(principal, LoginOutcome.BAD_CREDENTIALS, client)
            raise InvalidCredentials()
        if credentials.user.disabled_at is not None:
            raise AccountDisabled()
        async with self._db.transaction() as uow:
            await uow.users.reset_failed_attempts(principal.user_id)
        return credentials

    async def _record(self, principal: Principal, outcome: LoginOutcome, client: ClientInfo) -> None:
        async with self._db.transaction() as uow:
            await uow.login_history.record(
                user_id=principal.user_id,
                outcome=outcome,
                ip=client.ip,
                user_agent=client.user_agent,
                session_id=principal.session_id,
            )
