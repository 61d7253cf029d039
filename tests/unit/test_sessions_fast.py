"""A user's sessions and the operator's view of them, on the fast tier: paging, the
current session, expiry, and who may end which session."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from identity.domain.errors import InvalidArgument, PageTokenInvalid, SessionNotFound, UserNotFound
from identity.domain.models import ClientInfo, Principal
from identity.services.paging import PageTokens
from identity.services.sessions import parse_session_id
from tests.fakes import FAST_SECRET, FastServices

CLIENT = ClientInfo(ip="192.0.2.9", user_agent="fast-tier")
PASSWORD = "correct horse battery staple"


async def _signed_in(fast: FastServices, login: str, sessions: int) -> list[Principal]:
    user = await fast.auth.register(login, PASSWORD, "")
    principals = []
    for _ in range(sessions):
        fast.clock.advance(timedelta(seconds=1))
        issued = await fast.auth.login(login, PASSWORD, CLIENT)
        principals.append(Principal(user.id, issued.session_id, "jti"))
    return principals


async def test_own_sessions_are_listed_newest_first_in_pages(fast: FastServices) -> None:
    oldest, middle, newest = await _signed_in(fast, "ann", 3)
    await _signed_in(fast, "bob", 1)
    first = await fast.sessions.list_own(middle, 2, "")
    assert [s.session.id for s in first.sessions] == [newest.session_id, middle.session_id]
    assert [s.current for s in first.sessions] == [False, True]
    assert first.next_page_token
    second = await fast.sessions.list_own(middle, 2, first.next_page_token)
    assert [s.session.id for s in second.sessions] == [oldest.session_id]
    assert second.next_page_token == ""
    exact = await fast.sessions.list_own(middle, 3, "")
    assert len(exact.sessions) == 3 and exact.next_page_token == ""
    every = await fast.sessions.list_own(middle, 0, "")
    assert len(every.sessions) == 3


async def test_a_listed_session_expires_at_the_earlier_of_its_two_limits(fast: FastServices) -> None:
    (caller,) = await _signed_in(fast, "ann", 1)
    (listed,) = (await fast.sessions.list_own(caller, 0, "")).sessions
    session = listed.session
    assert listed.expires_at == session.last_used_at + fast.policy.session_idle_ttl
    # Used just before the absolute limit: that limit comes first now.
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    token = issued.refresh_token
    for _ in range(4):
        fast.clock.advance(timedelta(days=6))
        token = (await fast.auth.refresh(token, CLIENT)).refresh_token
    caller = Principal(caller.user_id, issued.session_id, "jti")
    (late,) = (await fast.sessions.list_own(caller, 0, "")).sessions
    assert (
        late.expires_at == late.session.expires_at < late.session.last_used_at + fast.policy.session_idle_ttl
    )


async def test_a_session_page_token_is_bound_to_its_owner_and_must_hold_a_position(
    fast: FastServices,
) -> None:
    ann = (await _signed_in(fast, "ann", 3))[0]
    bob = (await _signed_in(fast, "bob", 1))[0]
    token = (await fast.sessions.list_own(ann, 1, "")).next_page_token
    with pytest.raises(PageTokenInvalid):
        await fast.sessions.list_own(bob, 1, token)
    tokens = PageTokens(FAST_SECRET)
    for position in [{"c": "not a time", "i": str(uuid.uuid4())}, {"c": "2026-01-01T00:00:00"}, {"i": "x"}]:
        forged = tokens.encode("sessions", str(ann.user_id), position)
        with pytest.raises(PageTokenInvalid):
            await fast.sessions.list_own(ann, 1, forged)
    with pytest.raises(PageTokenInvalid):
        await fast.sessions.list_own(ann, 1, tokens.encode("history", str(ann.user_id), {"c": "x"}))


async def test_a_caller_ends_only_their_own_sessions(fast: FastServices) -> None:
    ann, other = await _signed_in(fast, "ann", 2)
    (bob,) = await _signed_in(fast, "bob", 1)
    with pytest.raises(SessionNotFound):
        await fast.sessions.revoke_own(ann, str(bob.session_id))
    with pytest.raises(SessionNotFound):
        await fast.sessions.revoke_own(ann, str(uuid.uuid4()))
    assert len((await fast.sessions.list_own(bob, 0, "")).sessions) == 1
    await fast.sessions.revoke_own(ann, f"  {other.session_id}  ")
    await fast.sessions.revoke_own(ann, str(other.session_id))  # again: same outcome
    assert [s.session.id for s in (await fast.sessions.list_own(ann, 0, "")).sessions] == [ann.session_id]
    async with fast.db.reader() as uow:
        ended = await uow.sessions.get(other.session_id)
    assert ended is not None and ended.revoked_reason == "revoked_by_user"


def test_a_session_id_must_be_a_short_uuid() -> None:
    sid = uuid.uuid4()
    assert parse_session_id(f" {sid} ") == sid
    assert parse_session_id(sid.hex) == sid
    for raw, message in [
        ("", "required"),
        ("   ", "required"),
        ("nope", "not a valid"),
        ("{" + str(sid) + "}x", ""),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            parse_session_id(raw, "sid_field")
        assert [v.field for v in refused.value.violations] == ["sid_field"]
        assert message in refused.value.message
        assert "sid_field" in refused.value.message
    padded = "urn:uuid:" + str(sid)
    assert parse_session_id(padded) == sid
    with pytest.raises(InvalidArgument):
        parse_session_id("urn:uuid:" + "0" * 56 + str(sid)[:0])
    with pytest.raises(InvalidArgument) as default_field:
        parse_session_id("x" * 65)
    assert [v.field for v in default_field.value.violations] == ["session_id"]
    assert parse_session_id(" " * 10 + str(sid)) == sid  # length is judged after trimming
    # uuid.UUID ignores every hyphen: 64 characters are still read, 65 are not.
    assert parse_session_id(sid.hex + "-" * 32) == sid
    with pytest.raises(InvalidArgument):
        parse_session_id(sid.hex + "-" * 33)


async def test_logout_others_keeps_the_calling_session_and_counts_the_rest(fast: FastServices) -> None:
    first, second, _third = await _signed_in(fast, "ann", 3)
    (bob,) = await _signed_in(fast, "bob", 1)
    assert await fast.sessions.logout_others(second) == 2
    assert [s.session.id for s in (await fast.sessions.list_own(second, 0, "")).sessions] == [
        second.session_id
    ]
    assert len((await fast.sessions.list_own(bob, 0, "")).sessions) == 1
    assert await fast.sessions.logout_others(second) == 0
    async with fast.db.reader() as uow:
        ended = await uow.sessions.get(first.session_id)
    assert ended is not None and ended.revoked_reason == "logout_others"


async def test_the_operator_lists_and_ends_a_users_sessions_by_login(fast: FastServices) -> None:
    first, second = await _signed_in(fast, "ann", 2)
    (bob,) = await _signed_in(fast, "bob", 1)
    with pytest.raises(UserNotFound):
        await fast.sessions.list_for_login("nobody")
    user, listed = await fast.sessions.list_for_login("  ANN ")
    assert user.id == first.user_id
    assert [s.session.id for s in listed] == [second.session_id, first.session_id]
    assert not any(s.current for s in listed)
    assert listed[0].expires_at == listed[0].session.last_used_at + fast.policy.session_idle_ttl
    with pytest.raises(SessionNotFound):
        await fast.sessions.revoke_for_login("ann", str(bob.session_id))
    with pytest.raises(SessionNotFound):
        await fast.sessions.revoke_for_login("ann", str(uuid.uuid4()))
    with pytest.raises(InvalidArgument) as bad:
        await fast.sessions.revoke_for_login("ann", "nope")
    assert [v.field for v in bad.value.violations] == ["session"]
    with pytest.raises(UserNotFound):
        await fast.sessions.revoke_for_login("nobody", None)
    assert await fast.sessions.revoke_for_login("ann", str(first.session_id)) == 1
    assert await fast.sessions.revoke_for_login("ann", str(first.session_id)) == 0
    async with fast.db.reader() as uow:
        ended = await uow.sessions.get(first.session_id)
    assert ended is not None and ended.revoked_reason == "revoked_by_operator"
    assert await fast.sessions.revoke_for_login("ann", None) == 1
    assert fast.db.state.sessions[second.session_id].revoked_reason == "revoked_by_operator"
    assert await fast.sessions.revoke_for_login("ann", None) == 0
    assert (await fast.sessions.list_for_login("ann"))[1] == []
    assert len((await fast.sessions.list_for_login("bob"))[1]) == 1


async def test_the_operator_sees_at_most_a_thousand_sessions_the_newest(fast: FastServices) -> None:
    (first,) = await _signed_in(fast, "ann", 1)
    async with fast.db.transaction() as uow:
        for i in range(1000):
            now = fast.clock.now() + timedelta(seconds=i + 1)
            await uow.sessions.create(
                uuid.uuid4(),
                first.user_id,
                now=now,
                expires_at=now + timedelta(days=1),
                ip=None,
                user_agent="",
            )
    _, listed = await fast.sessions.list_for_login("ann")
    assert len(listed) == 1000
    assert first.session_id not in {s.session.id for s in listed}
