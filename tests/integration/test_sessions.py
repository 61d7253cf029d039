"""Session control over real gRPC, PostgreSQL and Redis: list, revoke one, log out
the others; revocation is immediate for every RPC and survives a Redis FLUSHALL."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from identity.v1 import auth_pb2, errors_pb2
from tests.conftest import Account, register_and_login
from tests.integration.harness import server_with
from tests.support import failure


async def _login_again(auth, account: Account) -> auth_pb2.LoginResponse:
    return await auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))


async def _sessions(auth, metadata, page_size: int = 0) -> list[auth_pb2.Session]:
    listed: list[auth_pb2.Session] = []
    token = ""
    while True:
        page = await auth.ListSessions(
            auth_pb2.ListSessionsRequest(page_size=page_size, page_token=token), metadata=metadata
        )
        listed.extend(page.sessions)
        token = page.next_page_token
        if not token:
            return listed


async def _rejects(call, reason: str, code=grpc.StatusCode.UNAUTHENTICATED) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    got = failure(err.value)
    assert (got.code, got.reason) == (code, reason), got


async def test_list_sessions_shows_own_sessions_newest_first_with_current(auth, account):
    others = [await _login_again(auth, account) for _ in range(2)]
    listed = await _sessions(auth, account.metadata)
    assert [s.id for s in listed] == [others[1].session_id, others[0].session_id, account.session_id]
    assert [s.current for s in listed] == [False, False, True]
    first = listed[-1]
    assert first.ip == "127.0.0.1"
    assert "grpc" in first.user_agent
    assert first.create_time.seconds > 0 and first.last_used_time.seconds > 0
    assert first.expire_time.ToDatetime() > first.create_time.ToDatetime()


async def test_list_sessions_pages_with_opaque_tokens(auth, account):
    for _ in range(4):
        await _login_again(auth, account)
    page = await auth.ListSessions(auth_pb2.ListSessionsRequest(page_size=2), metadata=account.metadata)
    assert len(page.sessions) == 2 and page.next_page_token
    everything = await _sessions(auth, account.metadata, page_size=2)
    assert len(everything) == 5
    assert len({s.id for s in everything}) == 5
    assert [s.create_time.ToDatetime() for s in everything] == sorted(
        (s.create_time.ToDatetime() for s in everything), reverse=True
    )

    # Another user's page token, or an edited one, is refused and shows nothing.
    stranger = await register_and_login(auth)
    await _rejects(
        auth.ListSessions(
            auth_pb2.ListSessionsRequest(page_token=page.next_page_token), metadata=stranger.metadata
        ),
        "PAGE_TOKEN_INVALID",
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    body, _, mac = page.next_page_token.partition(".")
    await _rejects(
        auth.ListSessions(
            auth_pb2.ListSessionsRequest(page_token=body[:-2] + "AA." + mac), metadata=account.metadata
        ),
        "PAGE_TOKEN_INVALID",
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await _rejects(
        auth.ListSessions(auth_pb2.ListSessionsRequest(page_size=-1), metadata=account.metadata),
        "INVALID_FIELD",
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_ended_sessions_are_not_listed(auth, account):
    other = await _login_again(auth, account)
    await auth.RevokeSession(
        auth_pb2.RevokeSessionRequest(session_id=other.session_id), metadata=account.metadata
    )
    assert [s.id for s in await _sessions(auth, account.metadata)] == [account.session_id]


async def test_session_calls_need_a_live_access_token(auth):
    await _rejects(auth.ListSessions(auth_pb2.ListSessionsRequest()), "TOKEN_MISSING")
    await _rejects(auth.LogoutOtherSessions(auth_pb2.LogoutOtherSessionsRequest()), "TOKEN_MISSING")
    await _rejects(
        auth.RevokeSession(auth_pb2.RevokeSessionRequest(session_id=str(uuid.uuid4()))), "TOKEN_MISSING"
    )


async def test_revoke_session_ends_it_for_refresh_and_every_rpc(auth, account):
    other = await _login_again(auth, account)
    other_metadata = (("authorization", f"Bearer {other.access_token}"),)
    await auth.RevokeSession(
        auth_pb2.RevokeSessionRequest(session_id=other.session_id), metadata=account.metadata
    )
    await _rejects(
        auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=other_metadata), "SESSION_REVOKED"
    )
    validated = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=other.access_token))
    assert not validated.valid and validated.reason == errors_pb2.ERROR_REASON_SESSION_REVOKED
    await _rejects(
        auth.Refresh(auth_pb2.RefreshRequest(refresh_token=other.refresh_token)), "SESSION_REVOKED"
    )
    # The caller's own session is untouched; revoking again is harmless.
    await auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=account.metadata)
    await auth.RevokeSession(
        auth_pb2.RevokeSessionRequest(session_id=other.session_id), metadata=account.metadata
    )


async def test_revoking_the_current_session_is_a_logout(auth, account):
    await auth.RevokeSession(
        auth_pb2.RevokeSessionRequest(session_id=account.session_id), metadata=account.metadata
    )
    await _rejects(
        auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=account.metadata), "SESSION_REVOKED"
    )


async def test_another_users_session_is_not_found_and_untouched(auth, account):
    victim = await register_and_login(auth)
    for session_id in (victim.session_id, str(uuid.uuid4())):
        await _rejects(
            auth.RevokeSession(
                auth_pb2.RevokeSessionRequest(session_id=session_id), metadata=account.metadata
            ),
            "SESSION_NOT_FOUND",
            grpc.StatusCode.NOT_FOUND,
        )
    still = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=victim.access_token))
    assert still.valid


@pytest.mark.parametrize("bad", ["", "not-a-uuid", "1234", "x" * 5000, "'; DROP TABLE sessions; --"])
async def test_malformed_session_id_is_invalid_argument(auth, account, bad):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.RevokeSession(auth_pb2.RevokeSessionRequest(session_id=bad), metadata=account.metadata)
    got = failure(err.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert got.fields == ("session_id",)


async def test_logout_other_sessions_keeps_the_caller_and_kills_the_rest(auth, account):
    others = [await _login_again(auth, account) for _ in range(3)]
    # A refresh first: the survivor is the session of the calling access token, whatever
    # its refresh token did meanwhile.
    rotated = await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=account.refresh_token))
    reply = await auth.LogoutOtherSessions(auth_pb2.LogoutOtherSessionsRequest(), metadata=account.metadata)
    assert reply.revoked_count == 3
    for other in others:
        validated = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=other.access_token))
        assert validated.reason == errors_pb2.ERROR_REASON_SESSION_REVOKED
        await _rejects(
            auth.Refresh(auth_pb2.RefreshRequest(refresh_token=other.refresh_token)), "SESSION_REVOKED"
        )
    assert [s.id for s in await _sessions(auth, account.metadata)] == [account.session_id]
    await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=rotated.refresh_token))
    again = await auth.LogoutOtherSessions(auth_pb2.LogoutOtherSessionsRequest(), metadata=account.metadata)
    assert again.revoked_count == 0


async def test_logout_others_leaves_other_users_alone(auth, account):
    bystander = await register_and_login(auth)
    await _login_again(auth, account)
    await auth.LogoutOtherSessions(auth_pb2.LogoutOtherSessionsRequest(), metadata=account.metadata)
    assert (
        await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=bystander.access_token))
    ).valid


async def test_revocations_survive_a_redis_flushall(database_url, private_redis_url):
    async with server_with(database_url, redis_url=private_redis_url) as (auth, running):
        await _revocations_survive_a_redis_flushall(auth, await register_and_login(auth), running.services)


async def _revocations_survive_a_redis_flushall(auth, account, services):
    revoked_one = await _login_again(auth, account)
    logged_out_other = await _login_again(auth, account)
    await auth.RevokeSession(
        auth_pb2.RevokeSessionRequest(session_id=revoked_one.session_id), metadata=account.metadata
    )
    other_meta = (("authorization", f"Bearer {logged_out_other.access_token}"),)
    await auth.LogoutOtherSessions(auth_pb2.LogoutOtherSessionsRequest(), metadata=account.metadata)
    await services.redis.client.flushall()
    for dead in (revoked_one, logged_out_other):
        validated = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=dead.access_token))
        assert not validated.valid and validated.reason == errors_pb2.ERROR_REASON_SESSION_REVOKED
        await _rejects(
            auth.Refresh(auth_pb2.RefreshRequest(refresh_token=dead.refresh_token)), "SESSION_REVOKED"
        )
    await _rejects(auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=other_meta), "SESSION_REVOKED")
    await auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=account.metadata)


async def test_parallel_logout_others_from_two_sessions_ends_consistently(auth, account):
    second = await _login_again(auth, account)
    second_meta = (("authorization", f"Bearer {second.access_token}"),)
    results = await asyncio.gather(
        auth.LogoutOtherSessions(auth_pb2.LogoutOtherSessionsRequest(), metadata=account.metadata),
        auth.LogoutOtherSessions(auth_pb2.LogoutOtherSessionsRequest(), metadata=second_meta),
        return_exceptions=True,
    )
    # Each call ends the other's session; at most one of them can still be live.
    live = [
        t
        for t in (account.access_token, second.access_token)
        if (await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=t))).valid
    ]
    assert len(live) <= 1
    assert all(not isinstance(r, Exception) or isinstance(r, grpc.aio.AioRpcError) for r in results)
