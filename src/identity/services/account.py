"""Account changes by the account's owner: password and login.

Both re-authenticate (CredentialCheck.by_user) and then write in one transaction that
first re-reads the caller's session under a lock: a change is never made from a
session that was ended while the password was being checked."""

from __future__ import annotations

import structlog

from identity.domain.clock import Clock
from identity.domain.errors import InvalidArgument, InvalidCredentials, Reason
from identity.domain.logins import canonical_login, display_login
from identity.domain.models import ClientInfo, Principal, User
from identity.domain.passwords import check_password_policy, normalize_password
from identity.security.passwords import PasswordHasher
from identity.services.credentials import CredentialCheck
from identity.services.tokens import TokenPolicy, check_session_live
from identity.store.database import Database
from identity.store.uow import UnitOfWork

log = structlog.get_logger("identity.account")


class AccountService:
    def __init__(
        self,
        db: Database,
        hasher: PasswordHasher,
        credentials: CredentialCheck,
        policy: TokenPolicy,
        clock: Clock,
    ) -> None:
        self._db = db
        self._hasher = hasher
        self._credentials = credentials
        self._policy = policy
        self._clock = clock

    async def _lock_caller_session(self, uow: UnitOfWork, principal: Principal) -> None:
        session = await uow.sessions.get_for_update(principal.session_id)
        check_session_live(session, principal.user_id, self._policy, self._clock.now())

    async def change_password(
        self,
        principal: Principal,
        current_password: str,
        new_password: str,
        *,
        keep_other_sessions: bool,
        client: ClientInfo,
    ) -> int:
        """Sets a new password; ends every other session unless asked to keep them.
        Returns how many sessions ended. The calling session stays."""
        if not new_password:
            raise InvalidArgument("new_password", "new_password is required")
        async with self._db.reader() as uow:
            user = await uow.users.get(principal.user_id)
        if user is None:
            raise InvalidCredentials()
        # The new password is checked first: a policy mistake costs no attempt.
        checked = check_password_policy(new_password, user.login_canonical, field="new_password")
        await self._credentials.by_user(principal, current_password, "current_password", client)
        password_hash = await self._hasher.hash(checked)
        async with self._db.transaction() as uow:
            await self._lock_caller_session(uow, principal)
            await uow.users.set_password(principal.user_id, password_hash)
            # A ticket won with the old password must not complete a login after the change.
            await uow.mfa_tickets.delete_for_user(principal.user_id)
            revoked = 0
            if not keep_other_sessions:
                revoked = await uow.sessions.revoke_all_for_user(
                    principal.user_id, "password_changed", except_session=principal.session_id
                )
        log.info("password_changed", user_id=str(principal.user_id), sessions_revoked=revoked)
        return revoked

    async def change_login(
        self, principal: Principal, new_login: str, password: str, client: ClientInfo
    ) -> User:
        """Sets a new login (canonicalised, unique); the old one stops working at once.
        Sessions and login history stay: they belong to the user, not to the login."""
        canonical = canonical_login(new_login, field="new_login")
        await self._credentials.by_user(principal, password, "password", client)
        # Only after the password is confirmed: before, this answer would let a token
        # thief test guesses at what the password contains.
        if canonical in normalize_password(password).casefold():
            raise InvalidArgument(
                "new_login",
                "the login must not be part of the password",
                reason=Reason.PASSWORD_CONTAINS_LOGIN,
            )
        async with self._db.transaction() as uow:
            await self._lock_caller_session(uow, principal)
            await uow.users.set_login(principal.user_id, display_login(new_login), canonical)
            user = await uow.users.get(principal.user_id)
        assert user is not None
        log.info("login_changed", user_id=str(principal.user_id))
        return user
