"""Register, log in, refresh, log out: the auth core."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from uuid import UUID

import structlog

from identity.domain.clock import Clock
from identity.domain.errors import RefreshTokenInvalid, RefreshTokenReused
from identity.domain.logins import canonical_login, display_login, validate_email
from identity.domain.mfa import AMR_PASSWORD, MfaChallenge
from identity.domain.models import ClientInfo, IssuedTokens, LoginOutcome, Principal, User
from identity.domain.observer import NOOP, Observer, RefreshOutcome
from identity.domain.passwords import check_password_policy
from identity.security import opaque
from identity.security.passwords import PasswordHasher
from identity.services.credentials import CredentialCheck
from identity.services.mfa_challenge import MfaChallenges
from identity.services.tokens import TokenService, check_session_live
from identity.store.database import Database
from identity.store.uow import UnitOfWork

log = structlog.get_logger("identity.auth")


class AuthService:
    def __init__(
        self,
        db: Database,
        hasher: PasswordHasher,
        tokens: TokenService,
        credentials: CredentialCheck,
        clock: Clock,
        *,
        refresh_reuse_grace: timedelta = timedelta(0),
        mfa: MfaChallenges | None = None,
        observer: Observer = NOOP,
    ) -> None:
        self._observer = observer
        self._db = db
        self._hasher = hasher
        self._tokens = tokens
        self._credentials = credentials
        self._clock = clock
        self._refresh_reuse_grace = refresh_reuse_grace
        self._mfa = mfa

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

    async def login(self, login: str, password: str, client: ClientInfo) -> IssuedTokens | MfaChallenge:
        """Tokens, or for an account with a second factor a ticket for VerifyMfa."""
        credentials = await self._credentials.by_login(login, password, client)
        if credentials.user.mfa_enabled and self._mfa is not None:
            return await self._mfa.challenge(credentials.user.id, client)
        async with self._db.transaction() as uow:
            issued = await self._start_session(uow, credentials.user.id, client, LoginOutcome.SUCCESS)
        return await self._with_access_token(issued)

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
            now = self._clock.now()
            session_id = await uow.sessions.rotate_refresh_token(token_hash, now)
            if session_id is None:
                session_id = await self._retry_within_grace(uow, token_hash, now)
            if session_id is None:
                state = await uow.sessions.refresh_token_state(token_hash)
                if state is None:
                    raise RefreshTokenInvalid()
                reused_session = state.session_id
                await self._end_reused_session(uow, state.session_id, client, now)
            else:
                session = check_session_live(
                    await uow.sessions.get_for_update(session_id), None, self._tokens.policy, now
                )
                new_refresh = opaque.new_secret(opaque.REFRESH_PREFIX)
                new_hash = opaque.digest(new_refresh)
                await uow.sessions.add_refresh_token(new_hash, session_id)
                await uow.sessions.set_successor(token_hash, new_hash)
                await uow.sessions.touch(session_id, now)
        if reused_session is not None:
            # Raised outside the block so the revocation above is committed.
            log.warning("refresh_token_reuse", session_id=str(reused_session))
            self._observer.refresh(RefreshOutcome.REUSE_DETECTED)
            raise RefreshTokenReused()
        self._observer.refresh(RefreshOutcome.ROTATED)
        return await self._with_access_token(
            IssuedTokens("", now, new_refresh, session.id, session.user_id, 0, session.amr, session.auth_time)
        )

    async def _rotate_in_one_call(self, token_hash: bytes) -> IssuedTokens | None:
        """The common case (a live token of a live session) in one round trip; None sends
        the caller down the general path (unknown, rotated: grace window or reuse)."""
        new_refresh = opaque.new_secret(opaque.REFRESH_PREFIX)
        now = self._clock.now()
        async with self._db.reader() as uow:
            rotation = await uow.sessions.rotate_live_refresh_token(
                token_hash,
                opaque.digest(new_refresh),
                now=now,
                idle_ttl=self._tokens.policy.session_idle_ttl,
            )
        if rotation is None:
            return None
        # Not rotated: the session has ended (revoked, or past a lifetime); this says which.
        session = check_session_live(rotation.session, None, self._tokens.policy, now)
        if not rotation.rotated:
            raise RefreshTokenInvalid()
        self._observer.refresh(RefreshOutcome.ROTATED)
        return await self._with_access_token(
            IssuedTokens("", now, new_refresh, session.id, session.user_id, 0, session.amr, session.auth_time)
        )

    async def logout(self, principal: Principal) -> None:
        async with self._db.transaction() as uow:
            await uow.sessions.revoke(principal.session_id, "logout")

    async def _retry_within_grace(self, uow: UnitOfWork, token_hash: bytes, now: datetime) -> UUID | None:
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
            or state.rotated_at + self._refresh_reuse_grace < now
        ):
            return None
        if not await uow.sessions.retire_unused_refresh_token(state.replaced_by, now):
            return None  # the successor was used: the old token is being replayed
        log.info("refresh_retried_within_grace", session_id=str(state.session_id))
        return state.session_id

    async def _end_reused_session(
        self, uow: UnitOfWork, session_id: UUID, client: ClientInfo, now: datetime
    ) -> None:
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
                at=now,
            )

    async def start_session(
        self,
        uow: UnitOfWork,
        user_id: UUID,
        client: ClientInfo,
        outcome: LoginOutcome,
        *,
        amr: tuple[str, ...],
        auth_time: datetime,
    ) -> IssuedTokens:
        """A new session inside the caller's unit of work (VerifyMfa completes a login so)."""
        return await self._start_session(uow, user_id, client, outcome, amr=amr, auth_time=auth_time)

    async def with_access_token(self, issued: IssuedTokens) -> IssuedTokens:
        return await self._with_access_token(issued)

    async def _start_session(
        self,
        uow: UnitOfWork,
        user_id: UUID,
        client: ClientInfo,
        outcome: LoginOutcome,
        *,
        amr: tuple[str, ...] = AMR_PASSWORD,
        auth_time: datetime | None = None,
    ) -> IssuedTokens:
        session_id = uuid.uuid4()
        now = self._clock.now()
        await uow.sessions.create(
            session_id,
            user_id,
            now=now,
            expires_at=now + self._tokens.policy.session_absolute_ttl,
            ip=client.ip,
            user_agent=client.user_agent,
            amr=amr,
            auth_time=auth_time or now,
        )
        refresh_token = opaque.new_secret(opaque.REFRESH_PREFIX)
        await uow.sessions.add_refresh_token(opaque.digest(refresh_token), session_id)
        await uow.login_history.record(
            user_id=user_id,
            outcome=outcome,
            ip=client.ip,
            user_agent=client.user_agent,
            session_id=session_id,
            at=now,
        )
        return IssuedTokens("", now, refresh_token, session_id, user_id, 0, amr, auth_time or now)

    async def _with_access_token(self, issued: IssuedTokens) -> IssuedTokens:
        token, expires_at = await self._tokens.issue_access_token(
            issued.user_id, issued.session_id, amr=issued.amr, auth_time=issued.auth_time
        )
        return IssuedTokens(
            token,
            expires_at,
            issued.refresh_token,
            issued.session_id,
            issued.user_id,
            int(self._tokens.policy.access_ttl.total_seconds()),
            issued.amr,
            issued.auth_time,
        )
