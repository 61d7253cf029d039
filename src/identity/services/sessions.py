"""A user's sessions: list them, end one, end all but the current one; and the
operator's view of anyone's sessions by login.

Ending a session is one UPDATE of its row in PostgreSQL: every refresh token and
access token of it is refused from the next call on (TokenService and
AuthService.refresh read that row), and no Redis state can bring it back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import structlog

from identity.domain.clock import Clock
from identity.domain.errors import InvalidArgument, PageTokenInvalid, SessionNotFound, UserNotFound
from identity.domain.logins import canonical_login
from identity.domain.models import Principal, Session, User
from identity.domain.paging import SessionCursor
from identity.services.paging import PageTokens, page_size
from identity.services.tokens import TokenPolicy
from identity.store.database import Database

log = structlog.get_logger("identity.sessions")

PAGE_KIND = "sessions"
# Operators see at most this many sessions of one user at once.
OPERATOR_LIST_LIMIT = 1000


@dataclass(frozen=True)
class ListedSession:
    session: Session
    # When it ends if left unused: the earlier of the absolute and the idle limit.
    expires_at: datetime
    current: bool


@dataclass(frozen=True)
class SessionPage:
    sessions: list[ListedSession]
    next_page_token: str


def parse_session_id(raw: str, field: str = "session_id") -> UUID:
    text = raw.strip()
    if not text:
        raise InvalidArgument(field, f"{field} is required")
    invalid = InvalidArgument(field, f"{field} is not a valid session id")
    if len(text) > 64:  # uuid.UUID would accept odd spellings of any length; ids are short
        raise invalid
    try:
        return uuid.UUID(text)
    except ValueError:
        raise invalid from None


class SessionService:
    def __init__(self, db: Database, page_tokens: PageTokens, policy: TokenPolicy, clock: Clock) -> None:
        self._db = db
        self._page_tokens = page_tokens
        self._policy = policy
        self._clock = clock

    def _listed(self, session: Session, current: UUID | None) -> ListedSession:
        idle_end = session.last_used_at + self._policy.session_idle_ttl
        return ListedSession(session, min(session.expires_at, idle_end), session.id == current)

    def _cursor(self, principal: Principal, token: str) -> SessionCursor | None:
        position = self._page_tokens.decode(PAGE_KIND, str(principal.user_id), token)
        if position is None:
            return None
        try:
            return SessionCursor(datetime.fromisoformat(position["c"]), UUID(position["i"]))
        except (KeyError, TypeError, ValueError):
            raise PageTokenInvalid() from None

    async def list_own(self, principal: Principal, requested_size: int, page_token: str) -> SessionPage:
        """The caller's live sessions, newest first."""
        size = page_size(requested_size)
        after = self._cursor(principal, page_token)
        async with self._db.reader() as uow:
            rows = await uow.sessions.list_live_for_user(
                principal.user_id,
                now=self._clock.now(),
                idle_ttl=self._policy.session_idle_ttl,
                limit=size + 1,
                after=after,
            )
        page, more = rows[:size], len(rows) > size
        next_token = ""
        if more:
            last = page[-1]
            next_token = self._page_tokens.encode(
                PAGE_KIND, str(principal.user_id), {"c": last.created_at.isoformat(), "i": str(last.id)}
            )
        return SessionPage([self._listed(s, principal.session_id) for s in page], next_token)

    async def revoke_own(self, principal: Principal, raw_session_id: str) -> None:
        """Ends one of the caller's sessions (the current one too, like Logout).
        Ending an already ended session of one's own succeeds: the outcome is the same."""
        session_id = parse_session_id(raw_session_id)
        async with self._db.transaction() as uow:
            session = await uow.sessions.get_for_update(session_id)
            if session is None or session.user_id != principal.user_id:
                raise SessionNotFound()
            await uow.sessions.revoke(session_id, "revoked_by_user")
        log.info("session_revoked", session_id=str(session_id), by="user")

    async def logout_others(self, principal: Principal) -> int:
        """Ends every session of the caller but the one of the calling access token."""
        async with self._db.transaction() as uow:
            count = await uow.sessions.revoke_all_for_user(
                principal.user_id, "logout_others", except_session=principal.session_id
            )
        log.info("sessions_revoked", count=count, by="user", reason="logout_others")
        return count

    async def _user_by_login(self, login: str) -> User:
        canonical = canonical_login(login)
        async with self._db.reader() as uow:
            user = await uow.users.get_by_login(canonical)
        if user is None:
            raise UserNotFound()
        return user

    async def list_for_login(self, login: str) -> tuple[User, list[ListedSession]]:
        """Operator view: a user's live sessions, newest first."""
        user = await self._user_by_login(login)
        async with self._db.reader() as uow:
            rows = await uow.sessions.list_live_for_user(
                user.id,
                now=self._clock.now(),
                idle_ttl=self._policy.session_idle_ttl,
                limit=OPERATOR_LIST_LIMIT,
            )
        return user, [self._listed(s, None) for s in rows]

    async def revoke_for_login(self, login: str, raw_session_id: str | None) -> int:
        """Operator action: ends one session of the user (by id) or, with None, all of them."""
        session_id = None if raw_session_id is None else parse_session_id(raw_session_id, "session")
        user = await self._user_by_login(login)
        async with self._db.transaction() as uow:
            if session_id is None:
                count = await uow.sessions.revoke_all_for_user(user.id, "revoked_by_operator")
            else:
                session = await uow.sessions.get_for_update(session_id)
                if session is None or session.user_id != user.id:
                    raise SessionNotFound()
                count = int(await uow.sessions.revoke(session_id, "revoked_by_operator"))
        log.info("sessions_revoked", count=count, by="operator", user_id=str(user.id))
        return count
