"""Checking an access token with the ended-sessions memory (services/ended_sessions.py)
in front of PostgreSQL: while its lease holds, an ended session is refused from memory
and a session read live once is then checked without its row, its lifetime still
applying; the idle lifetime is left to the token's own expiry only when the token
cannot outlive it. On fakes and a frozen clock."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from identity.domain.errors import BackendUnavailable, SessionExpired, SessionRevoked, TokenRejected
from identity.domain.models import ClientInfo, IssuedTokens
from identity.services.ended_sessions import SessionFacts
from identity.store.keys import StoredKey
from tests.fakes import FastServices, FrozenClock, fast_services

CLIENT = ClientInfo(ip="192.0.2.7", user_agent="fast-tier/1")
PASSWORD = "correct horse battery staple"


class Memory:
    """EndedSessions as TokenService reads it: the lease, the ended sessions, the facts
    of sessions read live."""

    def __init__(self) -> None:
        self.lease = True
        # Whether a renewal asked for by a check would get the lease back (False: as with
        # PostgreSQL lost).
        self.renewable = False
        self.renewals = 0
        self.ended: set[uuid.UUID] = set()
        self.known: dict[uuid.UUID, SessionFacts] = {}

    def trusted(self) -> bool:
        return self.lease

    async def revalidate(self) -> bool:
        self.renewals += 1
        self.lease = self.renewable
        return self.lease

    def is_ended(self, session_id: uuid.UUID) -> bool:
        return session_id in self.ended

    def facts(self, session_id: uuid.UUID) -> SessionFacts | None:
        return self.known.get(session_id)

    def remember(self, session_id: uuid.UUID, facts: SessionFacts) -> None:
        if session_id not in self.ended:
            self.known[session_id] = facts


async def _signed_in(
    key_ring: dict[str, StoredKey], **policy: Any
) -> tuple[FastServices, Memory, IssuedTokens]:
    memory = Memory()
    fast = fast_services(key_ring, clock=FrozenClock(), ended=memory, **policy)
    await fast.auth.register("ann", PASSWORD, "")
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    return fast, memory, issued


def _database_down(fast: FastServices) -> None:
    fast.db.failure = BackendUnavailable()


async def test_an_issued_token_says_how_and_when_the_user_signed_in(key_ring) -> None:
    fast, _, issued = await _signed_in(key_ring)
    signed_in = fast.clock.now() - timedelta(hours=2)
    token, _ = await fast.tokens.issue_access_token(
        issued.user_id, issued.session_id, amr=("pwd", "otp"), auth_time=signed_in
    )
    claims = await fast.tokens.verify_signature_and_claims(token)
    assert (claims.amr, claims.auth_time) == (("pwd", "otp"), signed_in.replace(microsecond=0))


async def test_an_ended_session_is_refused_from_memory_while_the_lease_holds(key_ring) -> None:
    fast, memory, issued = await _signed_in(key_ring)
    memory.ended.add(issued.session_id)  # ended, and its row not read: memory answers
    with pytest.raises(SessionRevoked):
        await fast.tokens.validate(issued.access_token)
    memory.lease = False  # without the lease the row decides, and it is live
    assert (await fast.tokens.validate(issued.access_token)).session_id == issued.session_id


async def test_a_session_read_live_once_is_then_checked_without_its_row_up_to_its_end(key_ring) -> None:
    # Four minutes: within the key ring's reload interval (a reload needs the database).
    fast, memory, issued = await _signed_in(key_ring, session_absolute_ttl=timedelta(minutes=4))
    await fast.tokens.validate(issued.access_token)
    assert memory.known == {
        issued.session_id: SessionFacts(issued.user_id, fast.db.state.sessions[issued.session_id].expires_at)
    }
    _database_down(fast)
    fast.clock.advance(timedelta(minutes=4) - timedelta(microseconds=1))
    assert (await fast.tokens.validate(issued.access_token)).subject == issued.user_id
    fast.clock.advance(timedelta(microseconds=1))  # the session's end; its token lives on
    with pytest.raises(SessionExpired, match="maximum lifetime"):
        await fast.tokens.validate(issued.access_token)


async def test_a_token_of_a_remembered_session_of_another_user_is_refused(key_ring) -> None:
    fast, memory, issued = await _signed_in(key_ring)
    expires_at = fast.db.state.sessions[issued.session_id].expires_at
    memory.known[issued.session_id] = SessionFacts(uuid.uuid4(), expires_at)
    _database_down(fast)
    with pytest.raises(TokenRejected):
        await fast.tokens.validate(issued.access_token)


async def _checked_from_memory(key_ring: dict[str, StoredKey], idle: timedelta) -> bool:
    """Whether a remembered session's token is accepted with PostgreSQL down."""
    fast, _, issued = await _signed_in(key_ring, session_idle_ttl=idle)
    await fast.tokens.validate(issued.access_token)
    _database_down(fast)
    try:
        await fast.tokens.validate(issued.access_token)
    except BackendUnavailable:
        return False
    return True


async def test_the_idle_check_needs_the_row_unless_no_token_can_outlive_the_idle_lifetime(key_ring) -> None:
    # A token lives 15 minutes, give or take the 30-second skew at either end.
    assert await _checked_from_memory(key_ring, timedelta(minutes=16))
    assert not await _checked_from_memory(key_ring, timedelta(minutes=16) - timedelta(seconds=1))


async def test_a_token_of_a_session_idle_past_a_short_idle_lifetime_is_refused(key_ring) -> None:
    fast, _, issued = await _signed_in(key_ring, session_idle_ttl=timedelta(minutes=14))
    await fast.tokens.validate(issued.access_token)
    fast.clock.advance(timedelta(minutes=14))  # the token is still valid; the session is idle
    with pytest.raises(SessionExpired, match="idle"):
        await fast.tokens.validate(issued.access_token)


async def test_a_check_that_finds_the_lease_lapsed_renews_it_and_answers_from_memory(key_ring) -> None:
    fast, memory, issued = await _signed_in(key_ring)
    await fast.tokens.validate(issued.access_token)  # the session's facts are in memory
    memory.lease, memory.renewable = False, True
    _database_down(fast)  # no row read: it would fail
    assert (await fast.tokens.validate(issued.access_token)).session_id == issued.session_id
    assert memory.renewals == 1
    memory.ended.add(issued.session_id)
    memory.lease = False
    with pytest.raises(SessionRevoked):
        await fast.tokens.validate(issued.access_token)
