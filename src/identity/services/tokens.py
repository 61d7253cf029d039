"""Issuing access tokens and authenticating the bearer of one.

Every RPC of ours that takes an access token goes through `authenticate`, which
checks the session row in PostgreSQL: a revoked session's token is refused at
once, and losing Redis cannot revive it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from identity.domain.clock import Clock
from identity.domain.errors import SessionExpired, SessionRevoked, TokenMissing, TokenRejected
from identity.domain.models import Principal, Session
from identity.security.jwt_codec import AccessClaims, decode_access_token, encode_access_token, unverified_kid
from identity.services.ended_sessions import EndedSessions, SessionFacts
from identity.services.keys import KeyService
from identity.store.database import Database


@dataclass(frozen=True)
class TokenPolicy:
    issuer: str
    audiences: tuple[str, ...]
    access_ttl: timedelta
    clock_skew: timedelta
    session_absolute_ttl: timedelta
    session_idle_ttl: timedelta


def check_session_live(
    session: Session | None, user_id: UUID | None, policy: TokenPolicy, now: datetime
) -> Session:
    """The session if it may still be used at `now`: not revoked, within its absolute
    lifetime and not idle for longer than the idle lifetime (and the user's own, when
    `user_id` is given). The expiry says which lifetime ran out."""
    if session is None or (user_id is not None and session.user_id != user_id):
        raise TokenRejected()
    if session.revoked_at is not None:
        raise SessionRevoked()
    if session.expires_at <= now:
        raise SessionExpired("session reached its maximum lifetime, log in again")
    if session.last_used_at + policy.session_idle_ttl <= now:
        raise SessionExpired("session was idle for too long, log in again")
    return session


class TokenService:
    def __init__(
        self,
        db: Database,
        keys: KeyService,
        policy: TokenPolicy,
        clock: Clock,
        *,
        ended: EndedSessions | None = None,
    ) -> None:
        self._db = db
        self._keys = keys
        self._clock = clock
        self.policy = policy
        self._ended = ended
        # A token issued at a refresh expires (plus skew) before its session goes idle,
        # so a token that verifies says the session is not idle: the idle check needs
        # the row only when the idle lifetime is shorter than that.
        self._idle_implied = policy.session_idle_ttl >= policy.access_ttl + 2 * policy.clock_skew

    async def issue_access_token(
        self,
        user_id: UUID,
        session_id: UUID,
        *,
        amr: tuple[str, ...] = ("pwd",),
        auth_time: datetime | None = None,
    ) -> tuple[str, datetime]:
        ring = await self._keys.current()
        if ring.signing_key is None or ring.signing_kid is None:
            raise RuntimeError("no active signing key; run `identity keys rotate`")
        # RS256 signing (~0.4 ms) releases the GIL: off the event loop, other calls go on.
        return await asyncio.to_thread(
            encode_access_token,
            key=ring.signing_key,
            kid=ring.signing_kid,
            issuer=self.policy.issuer,
            audience=self.policy.audiences[0],
            user_id=user_id,
            session_id=session_id,
            now=self._clock.now(),
            ttl=self.policy.access_ttl,
            amr=amr,
            auth_time=auth_time,
        )

    async def verify_signature_and_claims(self, token: str) -> AccessClaims:
        """Local verification only (what a peer does with our JWKS)."""
        kid = unverified_kid(token)
        public = await self._keys.public_key(kid)
        if public is None:
            raise TokenRejected()
        return decode_access_token(
            token,
            key=public.key,
            issuer=self.policy.issuer,
            audiences=self.policy.audiences,
            leeway=self.policy.clock_skew,
            now=self._clock.now(),
        )

    async def validate(self, token: str) -> AccessClaims:
        """The claims of a token that verifies and whose session is live (ValidateToken)."""
        claims = await self.verify_signature_and_claims(token)
        now = self._clock.now()
        ended = self._ended
        if ended is not None and (ended.trusted() or await ended.revalidate()):
            # Exact while the lease holds: every session ended before this call began is
            # in memory (services/ended_sessions.py).
            if ended.is_ended(claims.session_id):
                raise SessionRevoked()
            facts = ended.facts(claims.session_id)
            if facts is not None and self._idle_implied:
                if facts.user_id != claims.subject:
                    raise TokenRejected()
                if facts.expires_at <= now:
                    raise SessionExpired("session reached its maximum lifetime, log in again")
                return claims
        async with self._db.reader() as uow:
            session = await uow.sessions.get(claims.session_id)
        live = check_session_live(session, claims.subject, self.policy, now)
        if ended is not None:
            ended.remember(live.id, SessionFacts(live.user_id, live.expires_at))
        return claims

    async def authenticate(self, token: str | None) -> Principal:
        """The caller behind a bearer token, for every RPC of ours that takes one."""
        if not token:
            raise TokenMissing()
        claims = await self.validate(token)
        return Principal(user_id=claims.subject, session_id=claims.session_id, token_id=claims.token_id)
