"""TOTP settings of the account's owner (set up, confirm, disable, new recovery codes),
and the operator's reset and view.

Setting up needs the password; disabling and new recovery codes need the password and
a second-factor code (re-authentication with both factors). Every password goes
through the one credential check; every code through the one second-factor check.
Enabling or disabling TOTP ends the user's other sessions, as a password change does."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import structlog

from identity.domain.clock import Clock
from identity.domain.errors import (
    InvalidCredentials,
    MfaAlreadyEnabled,
    MfaCodeIncorrect,
    MfaLocked,
    MfaNotPending,
    MfaTooManyAttempts,
    UserNotFound,
)
from identity.domain.logins import canonical_login
from identity.domain.mfa import (
    RECOVERY_CODE_COUNT,
    MfaState,
    ProofKind,
    TotpEnrolment,
    any_code,
    format_recovery_code,
    time_step,
    totp_code,
)
from identity.domain.models import ClientInfo, LoginOutcome, Principal, User
from identity.security import totp
from identity.services.credentials import CredentialCheck
from identity.services.mfa_guard import Match, SecondFactorCheck
from identity.services.tokens import TokenPolicy, check_session_live
from identity.store.database import Database
from identity.store.uow import UnitOfWork

log = structlog.get_logger("identity.mfa")


class MfaService:
    def __init__(
        self,
        db: Database,
        credentials: CredentialCheck,
        check: SecondFactorCheck,
        policy: TokenPolicy,
        clock: Clock,
    ) -> None:
        self._db = db
        self._credentials = credentials
        self._check = check
        self._policy = policy
        self._clock = clock

    async def _lock_caller_session(self, uow: UnitOfWork, principal: Principal) -> None:
        # A change is never made from a session that ended while its password was checked.
        session = await uow.sessions.get_for_update(principal.session_id)
        check_session_live(session, principal.user_id, self._policy, self._clock.now())

    async def _user(self, user_id: UUID) -> User:
        async with self._db.reader() as uow:
            user = await uow.users.get(user_id)
        if user is None:
            raise InvalidCredentials()
        return user

    def _new_recovery_codes(self, user_id: UUID) -> tuple[list[str], list[bytes]]:
        codes = [totp.new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
        return [format_recovery_code(c) for c in codes], [
            self._check.recovery_digest(user_id, c) for c in codes
        ]

    async def setup(self, principal: Principal, password: str, client: ClientInfo) -> TotpEnrolment:
        """A new pending secret, replacing any pending one; active only after confirm()."""
        await self._credentials.by_user(principal, password, "password", client)
        user = await self._user(principal.user_id)
        if user.mfa_enabled:
            raise MfaAlreadyEnabled()
        secret = totp.new_secret()
        now = self._clock.now()
        expires_at = now + self._check.policy.setup_ttl
        async with self._db.transaction() as uow:
            await self._lock_caller_session(uow, principal)
            stored = await uow.totp.put_pending(
                user.id, self._check.seal_secret(user.id, secret), now=now, expires_at=expires_at
            )
            if not stored:
                raise MfaAlreadyEnabled()
        uri = totp.provisioning_uri(secret, user.login, self._check.policy.issuer)
        log.info("totp_setup_started", user_id=str(user.id))
        return TotpEnrolment(secret, uri, totp.qr_code_svg(uri), expires_at.replace(microsecond=0))

    async def confirm(self, principal: Principal, code: str, client: ClientInfo) -> list[str]:
        """Activates the pending secret with a first valid code; the recovery codes, once."""
        proof = totp_code(code)
        now = self._clock.now()
        # A pending secret takes as many wrong codes as a ticket; then setup starts over.
        async with self._db.transaction() as uow:
            factor = await uow.totp.reserve_confirm_attempt(
                principal.user_id, now=now, max_failures=self._check.policy.ticket_max_failures
            )
        if factor is None:
            async with self._db.reader() as uow:
                current = await uow.totp.get(principal.user_id)
            if current is not None and current.enabled:
                raise MfaAlreadyEnabled()
            raise MfaNotPending()
        step = totp.matching_step(
            self._check.secret_of(factor), proof.value, time_step(now), self._check.policy.skew_steps
        )
        if step is None:
            raise MfaCodeIncorrect()
        shown, digests = self._new_recovery_codes(principal.user_id)
        async with self._db.transaction() as uow:
            await self._lock_caller_session(uow, principal)
            if not await uow.totp.confirm(principal.user_id, step, now):
                # Confirmed, replaced or expired meanwhile.
                raise MfaNotPending()
            await uow.recovery_codes.replace(principal.user_id, digests)
            ended = await uow.sessions.revoke_all_for_user(
                principal.user_id, "mfa_enabled", except_session=principal.session_id
            )
            await self._check.record(
                uow,
                principal.user_id,
                LoginOutcome.MFA_ENABLED,
                client,
                session_id=principal.session_id,
                now=now,
            )
        log.info("totp_enabled", user_id=str(principal.user_id), sessions_revoked=ended)
        return shown

    async def _both_factors(
        self, principal: Principal, password: str, code: str, client: ClientInfo
    ) -> tuple[Match, datetime]:
        """The password, then a second-factor code counted like any other (the code is
        used up later, in the transaction of the change it allows)."""
        proof = any_code(code)
        await self._credentials.by_user(principal, password, "password", client)
        now = self._clock.now()
        try:
            async with self._db.transaction() as uow:
                factor = await self._check.reserve(uow, principal.user_id, now)
        except (MfaLocked, MfaTooManyAttempts) as refused:
            await self._check.refused(principal.user_id, client, refused, session_id=principal.session_id)
            raise
        match = self._check.match(factor, proof, now)
        if match is None:
            await self._check.failed(principal.user_id, client, session_id=principal.session_id, now=now)
            raise MfaCodeIncorrect()
        return match, now

    async def _use_code(self, uow: UnitOfWork, principal: Principal, match: Match, now: datetime) -> None:
        await self._lock_caller_session(uow, principal)
        if not await self._check.consume(uow, principal.user_id, match, now):
            raise _CodeLost(reused=match.kind is ProofKind.TOTP)

    async def _lost(
        self, principal: Principal, client: ClientInfo, lost: _CodeLost, now: datetime
    ) -> MfaCodeIncorrect:
        await self._check.failed(principal.user_id, client, session_id=principal.session_id, now=now)
        return MfaCodeIncorrect(reused=lost.reused)

    async def disable(self, principal: Principal, password: str, code: str, client: ClientInfo) -> int:
        """Removes TOTP and the recovery codes; ends the other sessions (how many)."""
        match, now = await self._both_factors(principal, password, code, client)
        try:
            async with self._db.transaction() as uow:
                await self._use_code(uow, principal, match, now)
                await self._remove_factor(uow, principal.user_id)
                ended = await uow.sessions.revoke_all_for_user(
                    principal.user_id, "mfa_disabled", except_session=principal.session_id
                )
                await self._check.record(
                    uow,
                    principal.user_id,
                    LoginOutcome.MFA_DISABLED,
                    client,
                    session_id=principal.session_id,
                    now=now,
                )
        except _CodeLost as lost:
            raise await self._lost(principal, client, lost, now) from None
        log.info("totp_disabled", user_id=str(principal.user_id), sessions_revoked=ended)
        return ended

    async def regenerate_recovery_codes(
        self, principal: Principal, password: str, code: str, client: ClientInfo
    ) -> list[str]:
        """A new set of recovery codes; every earlier one stops working."""
        match, now = await self._both_factors(principal, password, code, client)
        shown, digests = self._new_recovery_codes(principal.user_id)
        try:
            async with self._db.transaction() as uow:
                await self._use_code(uow, principal, match, now)
                await uow.recovery_codes.replace(principal.user_id, digests)
        except _CodeLost as lost:
            raise await self._lost(principal, client, lost, now) from None
        log.info("recovery_codes_regenerated", user_id=str(principal.user_id))
        return shown

    @staticmethod
    async def _remove_factor(uow: UnitOfWork, user_id: UUID) -> bool:
        removed = await uow.totp.delete(user_id)
        await uow.recovery_codes.delete_for_user(user_id)
        await uow.mfa_tickets.delete_for_user(user_id)
        return removed

    async def _user_by_login(self, login: str) -> User:
        async with self._db.reader() as uow:
            user = await uow.users.get_by_login(canonical_login(login))
        if user is None:
            raise UserNotFound("no user with this login")
        return user

    async def reset_for_login(self, login: str) -> tuple[User, bool, int]:
        """Operator action for a lost device: removes TOTP, recovery codes and tickets,
        ends every session, and records it. Returns the user, whether a factor (active
        or pending) was there, and the sessions ended."""
        user = await self._user_by_login(login)
        now = self._clock.now()
        async with self._db.transaction() as uow:
            removed = await self._remove_factor(uow, user.id)
            ended = await uow.sessions.revoke_all_for_user(user.id, "mfa_reset")
            await self._check.record(uow, user.id, LoginOutcome.MFA_RESET, OPERATOR, now=now)
        log.warning("mfa_reset_by_operator", user_id=str(user.id), sessions_revoked=ended)
        return user, removed, ended

    async def state_for_login(self, login: str) -> tuple[User, MfaState]:
        """Operator view of a user's second factor."""
        user = await self._user_by_login(login)
        now = self._clock.now()
        async with self._db.reader() as uow:
            factor = await uow.totp.get(user.id)
            left = await uow.recovery_codes.count_unused(user.id)
        pending = (
            factor is not None
            and not factor.enabled
            and factor.setup_expires_at is not None
            and factor.setup_expires_at > now
        )
        return user, MfaState(
            enabled=factor is not None and factor.enabled,
            pending=pending,
            locked_at=None if factor is None else factor.locked_at,
            consecutive_failures=0 if factor is None else factor.consecutive_failures,
            recovery_codes_left=left,
        )


# Recorded as the client of operator actions in the login history.
OPERATOR = ClientInfo(ip=None, user_agent="identity-cli")


class _CodeLost(Exception):
    """The code lost its single-use compare-and-set; raised to roll the change back."""

    def __init__(self, *, reused: bool) -> None:
        self.reused = reused
