"""Register, log in, refresh, log out: the auth core."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import structlog

from identity.domain.errors import InvalidArgument, InvalidCredentials, Throttled, Unauthenticated
from identity.domain.logins import canonical_login, display_login, validate_email
from identity.domain.models import ClientInfo, IssuedTokens, LoginOutcome, Principal, Session, User
from identity.domain.passwords import MAX_PASSWORD_LENGTH, check_password_policy, normalize_password
from identity.security import opaque
from identity.security.passwords import PasswordHasher
from identity.services.clock import utcnow
from identity.services.throttle import LoginThrottle
from identity.services.tokens import SessionExpired, TokenPolicy, TokenService, check_session_live
from identity.store.database import Database
from identity.store.uow import UnitOfWork

log = structlog.get_logger("identity.auth")


class RefreshTokenInvalid(Unauthenticated):
    reason = "REFRESH_TOKEN_INVALID"
    message = "refresh token is invalid"


class RefreshTokenReused(Unauthenticated):
    reason = "REFRESH_TOKEN_REUSED"
    message = "refresh token was already used; the session has been ended"


class AccountDisabled(Unauthenticated):
    reason = "ACCOUNT_DISABLED"
    message = "account is disabled"


class AccountLocked(Throttled):
    reason = "ACCOUNT_LOCKED"
    message = "account is locked after too many failed logins; contact support"


@dataclass(frozen=True)
class LoginResult:
    """Tokens, or (later) an MFA challenge instead."""

    tokens: IssuedTokens


def live_for_refresh(session: Session | None, policy: TokenPolicy) -> Session:
    """check_session_live, with an expiry message that says which lifetime ran out."""
    try:
        return check_session_live(session, None, policy)
    except SessionExpired:
        assert session is not None
        if session.expires_at <= utcnow():
            raise SessionExpired("session reached its maximum lifetime, log in again") from None
        raise SessionExpired("session was idle for too long, log in again") from None


def require_password_field(raw: str, field: str) -> str:
    if not raw:
        raise InvalidArgument(field, f"{field} is required")
    if len(raw) > MAX_PASSWORD_LENGTH * 4:
        raise InvalidArgument(field, f"{field} is too long", reason="PASSWORD_TOO_LONG")
    return normalize_password(raw)


class AuthService:
    def __init__(
        self,
        db: Database,
        hasher: PasswordHasher,
        tokens: TokenService,
        throttle: LoginThrottle,
        *,
        max_failed_logins: int,
        refresh_reuse_grace: timedelta = timedelta(0),
    ) -> None:
        self._db = db
        self._hasher = hasher
        self._tokens = tokens
        self._throttle = throttle
        self._max_failed_logins = max_failed_logins
        self._refresh_reuse_grace = refresh_reuse_grace

    async def register(self, login: str, password: str, email: str) -> User:
        canonical = canonical_login(login)
        checked_email = validate_email(email)
        checked_password = check_password_policy(password, canonical)
        password_hash = await self._hasher.hash(checked_password)
        async with self._db.transaction() as uow:
            user = await uow.users.create(
                uuid.uuid4(), display_login(login), canonical, checked_email, password_hash
            )
        log.info("user_registered", user_id=str(user.id))
        return user

    async def login(self, login: str, password: str, client: ClientInfo) -> LoginResult:
        if not login.strip():
            raise InvalidArgument("login", "login is required")
        password = require_password_field(password, "password")
        try:
            canonical = canonical_login(login)
        except InvalidArgument:
            # No account can have this login; answer exactly as for a wrong password.
            await self._hasher.verify(password, None)
            raise InvalidCredentials() from None

        try:
            await self._throttle.count_attempt(canonical, client.ip)
        except Throttled:
            await self._record_for_login(canonical, LoginOutcome.THROTTLED, client)
            raise

        async with self._db.transaction() as uow:
            credentials = await uow.users.count_failed_attempt(canonical)
        if credentials is not None and credentials.failed_logins > self._max_failed_logins:
            await self._record(credentials.user.id, LoginOutcome.LOCKED_OUT, client)
            raise AccountLocked(retry_after_seconds=3600)

        matched = await self._hasher.verify(password, credentials.password_hash if credentials else None)
        if credentials is None or not matched:
            await self._record(
                credentials.user.id if credentials else None, LoginOutcome.BAD_CREDENTIALS, client
            )
            raise InvalidCredentials()
        user = credentials.user
        if user.disabled_at is not None:
            await self._record(user.id, LoginOutcome.ACCOUNT_DISABLED, client)
            raise AccountDisabled()

        async with self._db.transaction() as uow:
            await uow.users.reset_failed_attempts(user.id)
            issued = await self._start_session(uow, user.id, client, LoginOutcome.SUCCESS)
        return LoginResult(tokens=await self._with_access_token(issued))

    async def refresh(self, refresh_token: str, client: ClientInfo) -> IssuedTokens:
        if (
            not refresh_token.startswith(opaque.REFRESH_PREFIX)
            or len(refresh_token) > opaque.MAX_OPAQUE_LENGTH
        ):
            raise RefreshTokenInvalid()
        token_hash = opaque.digest(refresh_token)
        fast = await self._rotate_in_one_call(token_hash)
        if fast is not None:
            return fast
        reused_session: UUID | None = None
        async with self._db.transaction() as uow:
            session_id = await uow.sessions.rotate_refresh_token(token_hash)
            if session_id is None:
                session_id = await self._retry_within_grace(uow, token_hash)
            if session_id is None:
                state = await uow.sessions.refresh_token_state(token_hash)
                if state is None:
                    raise RefreshTokenInvalid()
                reused_session = state.session_id
                await self._end_reused_session(uow, state.session_id, client)
            else:
                session = live_for_refresh(await uow.sessions.get_for_update(session_id), self._tokens.policy)
                new_refresh = opaque.new_secret(opaque.REFRESH_PREFIX)
                new_hash = opaque.digest(new_refresh)
                await uow.sessions.add_refresh_token(new_hash, session_id)
                await uow.sessions.set_successor(token_hash, new_hash)
                await uow.sessions.touch(session_id)
        if reused_session is not None:
            # Raised outside the block so the revocation above is committed.
            log.warning("refresh_token_reuse", session_id=str(reused_session))
            raise RefreshTokenReused()
        return await self._with_access_token(
            IssuedTokens("", utcnow(), new_refresh, session.id, session.user_id)
        )

    async def _rotate_in_one_call(self, token_hash: bytes) -> IssuedTokens | None:
        """The common case (a live token of a live session) in one round trip; None sends
        the caller down the general path (unknown, rotated: grace window or reuse)."""
        new_refresh = opaque.new_secret(opaque.REFRESH_PREFIX)
        async with self._db.reader() as db:
            rotation = await db.sessions.rotate_live_refresh_token(
                token_hash,
                opaque.digest(new_refresh),
                now=utcnow(),
                idle_ttl=self._tokens.policy.session_idle_ttl,
            )
        if rotation is None:
            return None
        session = live_for_refresh(rotation.session, self._tokens.policy)
        if not rotation.rotated:  # not live at `now`: only if the clock stepped back since
            raise RefreshTokenInvalid()
        return await self._with_access_token(
            IssuedTokens("", utcnow(), new_refresh, session.id, session.user_id)
        )

    async def logout(self, principal: Principal) -> None:
        async with self._db.transaction() as uow:
            await uow.sessions.revoke(principal.session_id, "logout")

    async def _retry_within_grace(self, uow: UnitOfWork, token_hash: bytes) -> UUID | None:
        """A second use of a rotated token, within the grace window and while the token
        its rotation produced is still unused, is a client retrying a lost answer: that
        unused successor dies here and the caller issues a new one, so the session never
        holds two live tokens. Returns the session id, or None when this is reuse."""
        if self._refresh_reuse_grace <= timedelta(0):
            return None
        # The row lock makes concurrent retries of one token take turns.
        state = await uow.sessions.lock_refresh_token(token_hash)
        if (
            state is None
            or state.rotated_at is None
            or state.replaced_by is None
            or state.rotated_at + self._refresh_reuse_grace < utcnow()
        ):
            return None
        if not await uow.sessions.retire_unused_refresh_token(state.replaced_by):
            return None  # the successor was used: the old token is being replayed
        log.info("refresh_retried_within_grace", session_id=str(state.session_id))
        return state.session_id

    async def _end_reused_session(self, uow: UnitOfWork, session_id: UUID, client: ClientInfo) -> None:
        session = await uow.sessions.get_for_update(session_id)
        if session is None:
            return
        if await uow.sessions.revoke(session_id, "refresh_token_reuse"):
            await uow.login_history.record(
                user_id=session.user_id,
                outcome=LoginOutcome.REFRESH_REUSE,
                ip=client.ip,
                user_agent=client.user_agent,
                session_id=session_id,
            )

    async def _start_session(
        self, uow: UnitOfWork, user_id: UUID, client: ClientInfo, outcome: LoginOutcome
    ) -> IssuedTokens:
        session_id = uuid.uuid4()
        expires_at = utcnow() + self._tokens.policy.session_absolute_ttl
        await uow.sessions.create(session_id, user_id, expires_at, client.ip, client.user_agent)
        refresh_token = opaque.new_secret(opaque.REFRESH_PREFIX)
        await uow.sessions.add_refresh_token(opaque.digest(refresh_token), session_id)
        await uow.login_history.record(
            user_id=user_id,
            outcome=outcome,
            ip=client.ip,
            user_agent=client.user_agent,
            session_id=session_id,
        )
        return IssuedTokens("", utcnow(), refresh_token, session_id, user_id)

    async def _with_access_token(self, issued: IssuedTokens) -> IssuedTokens:
        token, expires_at = await self._tokens.issue_access_token(issued.user_id, issued.session_id)
        return IssuedTokens(token, expires_at, issued.refresh_token, issued.session_id, issued.user_id)

    async def _record(self, user_id: UUID | None, outcome: LoginOutcome, client: ClientInfo) -> None:
        async with self._db.transaction() as uow:
            await uow.login_history.record(
                user_id=user_id, outcome=outcome, ip=client.ip, user_agent=client.user_agent
            )

    async def _record_for_login(self, canonical: str, outcome: LoginOutcome, client: ClientInfo) -> None:
        async with self._db.transaction() as uow:
            user = await uow.users.get_by_login(canonical)
            await uow.login_history.record(
                user_id=user.id if user else None, outcome=outcome, ip=client.ip, user_agent=client.user_agent
            )
