"""The second half of a login with a second factor: VerifyMfa.

The ticket and the account each count the attempt before the code is looked at (one
transaction, committed whatever the code turns out to be). A matching code then
uses the ticket up, wins the single-use compare-and-set of its step (or recovery
code) and starts the session, all in one transaction: of any number of parallel
calls with one code, on any number of processes, exactly one gets tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import structlog

from identity.domain.clock import Clock
from identity.domain.errors import (
    AccountDisabled,
    DomainError,
    MfaCodeInvalid,
    MfaCodeReused,
    MfaLocked,
    MfaNotEnabled,
    MfaTicketExhausted,
    MfaTicketExpired,
    MfaTicketInvalid,
    MfaTooManyAttempts,
)
from identity.domain.mfa import MfaTicket, ProofKind, TotpFactor, verify_mfa_proof
from identity.domain.models import ClientInfo, IssuedTokens, LoginOutcome
from identity.domain.observer import NOOP, Observer
from identity.security import opaque
from identity.services.auth import AuthService
from identity.services.mfa_guard import Match, SecondFactorCheck
from identity.store.database import Database
from identity.store.uow import UnitOfWork

log = structlog.get_logger("identity.mfa")


@dataclass(frozen=True)
class MfaVerified:
    tokens: IssuedTokens
    # How many unused recovery codes are left, when one was used; else None.
    recovery_codes_remaining: int | None


class _Lost(Exception):
    """Raised inside the final transaction to roll it back: the code lost its
    compare-and-set (`error` says how the client is answered)."""

    def __init__(self, error: DomainError, counts_as_failure: bool) -> None:
        self.error = error
        self.counts_as_failure = counts_as_failure


def ticket_digest(raw: str) -> bytes:
    if not raw.startswith(opaque.MFA_TICKET_PREFIX) or len(raw) > opaque.MAX_OPAQUE_LENGTH:
        raise MfaTicketInvalid()
    return opaque.digest(raw)


class MfaLogin:
    def __init__(
        self,
        db: Database,
        auth: AuthService,
        check: SecondFactorCheck,
        clock: Clock,
        observer: Observer = NOOP,
    ) -> None:
        self._db = db
        self._auth = auth
        self._check = check
        self._clock = clock
        self._observer = observer

    async def verify(self, raw_ticket: str, code: str, recovery_code: str, client: ClientInfo) -> MfaVerified:
        proof = verify_mfa_proof(code, recovery_code)
        digest = ticket_digest(raw_ticket)
        now = self._clock.now()
        ticket, factor = await self._reserve(digest, now, client)
        match = self._check.match(factor, proof, now)
        if match is None:
            await self._check.failed(ticket.user_id, client, now=now)
            raise MfaCodeInvalid()
        try:
            async with self._db.transaction() as uow:
                verified = await self._complete(uow, digest, ticket, match, client, now)
        except _Lost as lost:
            if lost.counts_as_failure:
                await self._check.failed(ticket.user_id, client, now=now)
            raise lost.error from None
        log.info("mfa_verified", user_id=str(ticket.user_id), method=match.kind.value)
        self._observer.mfa(LoginOutcome.MFA_SUCCESS)
        return MfaVerified(
            await self._auth.with_access_token(verified.tokens), verified.recovery_codes_remaining
        )

    async def _reserve(
        self, digest: bytes, now: datetime, client: ClientInfo
    ) -> tuple[MfaTicket, TotpFactor]:
        policy = self._check.policy
        user_id: UUID | None = None
        try:
            async with self._db.transaction() as uow:
                ticket = await uow.mfa_tickets.reserve_attempt(
                    digest, now=now, max_failures=policy.ticket_max_failures
                )
                if ticket is None:
                    raise await self._why_not(uow, digest, now)
                user_id = ticket.user_id
                factor = await self._check.reserve(uow, ticket.user_id, now)
        except (MfaLocked, MfaTooManyAttempts) as refused:
            # Rolled back: the ticket keeps this attempt, the refusal is recorded.
            assert user_id is not None
            await self._check.refused(user_id, client, refused)
            raise
        except MfaNotEnabled:
            # The factor was removed after this login (disabled, or an operator reset).
            raise MfaTicketInvalid() from None
        return ticket, factor

    @staticmethod
    async def _why_not(uow: UnitOfWork, digest: bytes, now: datetime) -> DomainError:
        ticket = await uow.mfa_tickets.get(digest)
        if ticket is None or ticket.used_at is not None:
            return MfaTicketInvalid()
        if ticket.expires_at <= now:
            return MfaTicketExpired()
        return MfaTicketExhausted()

    async def _complete(
        self,
        uow: UnitOfWork,
        digest: bytes,
        ticket: MfaTicket,
        match: Match,
        client: ClientInfo,
        now: datetime,
    ) -> MfaVerified:
        if not await uow.mfa_tickets.use(digest, now):
            raise _Lost(MfaTicketInvalid(), counts_as_failure=False)
        user = await uow.users.get(ticket.user_id)
        if user is None or user.disabled_at is not None:
            # Disabled after the password was checked: the ticket dies with the account's sessions.
            raise _Lost(AccountDisabled(), counts_as_failure=False)
        if not await self._check.consume(uow, ticket.user_id, match, now):
            if match.kind is ProofKind.TOTP:
                raise _Lost(MfaCodeReused(), counts_as_failure=True)
            raise _Lost(MfaCodeInvalid(), counts_as_failure=True)
        remaining = None
        if match.kind is ProofKind.RECOVERY_CODE:
            remaining = await uow.recovery_codes.count_unused(ticket.user_id)
        issued = await self._auth.start_session(
            uow, ticket.user_id, client, LoginOutcome.MFA_SUCCESS, amr=match.amr, auth_time=now
        )
        return MfaVerified(issued, remaining)
