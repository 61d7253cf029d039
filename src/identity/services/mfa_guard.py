"""The one check of a second-factor code, shared by VerifyMfa and the re-authentication
of DisableTotp and RegenerateRecoveryCodes.

Every code is checked in three moves:

1. `reserve` counts the attempt as a wrong code for the account, in PostgreSQL, before
   the code is looked at: at most `failures_per_window` wrong codes per account per
   window and `lock_threshold` consecutive ones, however many tickets or processes
   the guesses come through. Past the threshold the factor locks durably.
2. `match` compares the code with the codes of the accepted steps (current and, with
   skew, the previous one) in constant time; no I/O.
3. `consume` is the compare-and-set that makes a code single use (the step must be
   later than every step accepted before; a recovery code must still be unused),
   and gives the reserved attempt back. It runs in the caller's transaction, so the
   rest of the use case commits with it or not at all.

A code that does not match, or loses the compare-and-set, keeps its reservation
(`failed` records it and locks the factor when the threshold is reached)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import structlog

from identity.domain.clock import Clock
from identity.domain.errors import MfaLocked, MfaNotEnabled, MfaTooManyAttempts
from identity.domain.mfa import (
    AMR_RECOVERY_CODE,
    AMR_TOTP,
    MfaPolicy,
    Proof,
    ProofKind,
    TotpFactor,
    time_step,
)
from identity.domain.models import ClientInfo, LoginOutcome
from identity.domain.observer import NOOP, Observer
from identity.security import totp
from identity.security.secretbox import SecretBox
from identity.store.database import Database
from identity.store.uow import UnitOfWork

log = structlog.get_logger("identity.mfa")


@dataclass(frozen=True)
class Match:
    """A code that matched: the TOTP step it belongs to, or a recovery code's digest."""

    kind: ProofKind
    step: int = 0
    digest: bytes = b""

    @property
    def amr(self) -> tuple[str, ...]:
        return AMR_TOTP if self.kind is ProofKind.TOTP else AMR_RECOVERY_CODE


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds()) + 1)


class SecondFactorCheck:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        recovery: totp.RecoveryCodeHasher,
        policy: MfaPolicy,
        clock: Clock,
        observer: Observer = NOOP,
    ) -> None:
        self._db = db
        self._box = box
        self._recovery = recovery
        self.policy = policy
        self._clock = clock
        self._observer = observer

    def secret_of(self, factor: TotpFactor) -> str:
        return self._box.open(factor.secret_encrypted, str(factor.user_id)).decode("ascii")

    def seal_secret(self, user_id: UUID, secret: str) -> bytes:
        return self._box.seal(secret.encode("ascii"), str(user_id))

    def recovery_digest(self, user_id: UUID, code: str) -> bytes:
        return self._recovery.digest(user_id, code)

    async def reserve(self, uow: UnitOfWork, user_id: UUID, now: datetime) -> TotpFactor:
        """Counts one attempt before any code is checked; raises when none is left."""
        policy = self.policy
        factor = await uow.totp.reserve_attempt(
            user_id,
            now=now,
            window=policy.failure_window,
            per_window=policy.failures_per_window,
            lock_threshold=policy.lock_threshold,
        )
        if factor is not None:
            return factor
        current = await uow.totp.get(user_id)
        if current is None or not current.enabled:
            raise MfaNotEnabled()
        if current.locked_at is not None or current.consecutive_failures >= policy.lock_threshold:
            locked_at = current.locked_at or now
            raise MfaLocked(_seconds_until(locked_at + policy.lock_wait, now))
        # The window is full (or was reset by an unlock a moment ago: then try again at once).
        window_end = (current.window_started_at or now) + policy.failure_window
        raise MfaTooManyAttempts(_seconds_until(window_end, now) if current.window_started_at else 1)

    def match(self, factor: TotpFactor, proof: Proof, now: datetime) -> Match | None:
        if proof.kind is ProofKind.RECOVERY_CODE:
            # Recovery codes are checked by their digest in consume(): a keyed digest
            # lookup reveals nothing through its timing.
            return Match(ProofKind.RECOVERY_CODE, digest=self.recovery_digest(factor.user_id, proof.value))
        step = totp.matching_step(self.secret_of(factor), proof.value, time_step(now), self.policy.skew_steps)
        return None if step is None else Match(ProofKind.TOTP, step=step)

    async def consume(self, uow: UnitOfWork, user_id: UUID, match: Match, now: datetime) -> bool:
        if match.kind is ProofKind.TOTP:
            return await uow.totp.accept_step(user_id, match.step)
        if not await uow.recovery_codes.use(user_id, match.digest, now):
            return False
        await uow.totp.forgive_attempt(user_id)
        return True

    async def failed(
        self, user_id: UUID, client: ClientInfo, *, session_id: UUID | None = None, now: datetime
    ) -> None:
        """Records a wrong (or replayed) code, and the lock when this one reached the threshold."""
        async with self._db.transaction() as uow:
            locked = await uow.totp.lock_if_over(user_id, now=now, lock_threshold=self.policy.lock_threshold)
            await self.record(uow, user_id, LoginOutcome.MFA_FAILED, client, session_id=session_id, now=now)
            if locked:
                await self.record(
                    uow, user_id, LoginOutcome.MFA_LOCKED, client, session_id=session_id, now=now
                )
        self._observer.mfa(LoginOutcome.MFA_FAILED)
        if locked:
            self._observer.mfa(LoginOutcome.MFA_LOCKED)
            log.warning("mfa_locked", user_id=str(user_id))

    async def refused(
        self,
        user_id: UUID,
        client: ClientInfo,
        error: MfaLocked | MfaTooManyAttempts,
        *,
        session_id: UUID | None = None,
    ) -> None:
        """Records an attempt refused before its code was looked at."""
        outcome = LoginOutcome.MFA_LOCKED if isinstance(error, MfaLocked) else LoginOutcome.THROTTLED
        async with self._db.transaction() as uow:
            await self.record(uow, user_id, outcome, client, session_id=session_id, now=self._clock.now())
        self._observer.mfa(outcome)

    @staticmethod
    async def record(
        uow: UnitOfWork,
        user_id: UUID,
        outcome: LoginOutcome,
        client: ClientInfo,
        *,
        session_id: UUID | None = None,
        now: datetime,
    ) -> None:
        await uow.login_history.record(
            user_id=user_id,
            outcome=outcome,
            ip=client.ip,
            user_agent=client.user_agent,
            session_id=session_id,
            at=now,
        )
