"""The first half of a login with a second factor: after the password, a ticket.

The ticket is opaque (`mt_` + 256 random bits), stored as a digest, bound to the user
and the login attempt (its time, address and user agent), short-lived and single use;
only VerifyMfa takes it. A locked second factor opens here: a correct password after
the waiting period unlocks it (and the attempt is recorded); before, Login answers
MFA_LOCKED."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import structlog

from identity.domain.clock import Clock
from identity.domain.errors import MfaLocked
from identity.domain.mfa import MfaChallenge, MfaPolicy, TotpFactor
from identity.domain.models import ClientInfo, LoginOutcome
from identity.domain.observer import NOOP, Observer
from identity.security import opaque
from identity.store.database import Database

log = structlog.get_logger("identity.mfa")


class MfaChallenges:
    def __init__(self, db: Database, policy: MfaPolicy, clock: Clock, observer: Observer = NOOP) -> None:
        self._db = db
        self._policy = policy
        self._clock = clock
        self._observer = observer

    def _locked_until(self, factor: TotpFactor | None, now: datetime) -> datetime | None:
        if factor is None:
            return None
        if factor.locked_at is None and factor.consecutive_failures < self._policy.lock_threshold:
            return None
        until = (factor.locked_at or now) + self._policy.lock_wait
        return until if until > now else None

    async def challenge(self, user_id: UUID, client: ClientInfo) -> MfaChallenge:
        now = self._clock.now()
        ticket = opaque.new_secret(opaque.MFA_TICKET_PREFIX)
        expires_at = now + self._policy.ticket_ttl
        async with self._db.transaction() as uow:
            factor = await uow.totp.get_for_update(user_id)
            locked_until = self._locked_until(factor, now)
            if locked_until is None:
                if factor is not None and (
                    factor.locked_at is not None or factor.consecutive_failures >= self._policy.lock_threshold
                ):
                    # A correct password after the waiting period opens a locked second factor.
                    await uow.totp.unlock(user_id)
                    log.info("mfa_unlocked_by_password", user_id=str(user_id))
                await uow.mfa_tickets.purge_for_user(user_id, now)
                await uow.mfa_tickets.create(
                    opaque.digest(ticket),
                    user_id,
                    now=now,
                    expires_at=expires_at,
                    ip=client.ip,
                    user_agent=client.user_agent,
                )
            outcome = LoginOutcome.MFA_REQUIRED if locked_until is None else LoginOutcome.MFA_LOCKED
            await uow.login_history.record(
                user_id=user_id, outcome=outcome, ip=client.ip, user_agent=client.user_agent, at=now
            )
        self._observer.mfa(outcome)
        if locked_until is not None:
            raise MfaLocked(max(1, int((locked_until - now).total_seconds()) + 1))
        return MfaChallenge(ticket=ticket, expires_at=expires_at.replace(microsecond=0), user_id=user_id)
