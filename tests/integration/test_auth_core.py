"""Register, login, refresh, logout over real gRPC, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from identity.v1 import auth_pb2, errors_pb2
from tests.conftest import register_and_login
from tests.support import STRONG_PASSWORD, failure, new_login


async def test_register_then_login_issues_tokens(auth):
    account = await register_and_login(auth)
    assert account.access_token.count(".") == 2
    assert account.refresh_token.startswith("rt_")
    assert account.session_id


async def test_lookalike_login_collides(auth):
    login = new_login("zoë")
    await auth.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
    # Fullwidth letters and upper case fold to the same canonical login.
    lookalike = "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in login).upper()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Register(auth_pb2.RegisterRequest(login=lookalike, password=STRONG_PASSWORD))
    got = failure(err.value)
    assert got.code == grpc.StatusCode.ALREADY_EXISTS
    assert got.reason == "LOGIN_TAKEN"


async def test_twenty_concurrent_registrations_exactly_one_wins(auth):
    login = new_login("race")
    results = await asyncio.gather(
        *(auth.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD)) for _ in range(20)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, auth_pb2.RegisterResponse)]
    losers = [failure(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert len(losers) == 19
    assert {f.code for f in losers} == {grpc.StatusCode.ALREADY_EXISTS}


async def test_unknown_login_and_wrong_password_answer_alike(auth, account):
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await auth.Login(auth_pb2.LoginRequest(login=account.login, password="not the password"))
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await auth.Login(auth_pb2.LoginRequest(login=new_login("nobody"), password="not the password"))
    a, b = failure(wrong.value), failure(unknown.value)
    assert a.code == b.code == grpc.StatusCode.UNAUTHENTICATED
    assert a.message == b.message
    assert a.reason == b.reason == "INVALID_CREDENTIALS"


async def test_refresh_rotates_and_old_token_dies(auth, account):
    rotated = await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=account.refresh_token))
    assert rotated.refresh_token != account.refresh_token
    assert rotated.session_id == account.session_id
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=account.refresh_token))
    assert failure(err.value).reason == "REFRESH_TOKEN_REUSED"


async def test_twenty_concurrent_refreshes_exactly_one_succeeds(auth, account):
    results = await asyncio.gather(
        *(auth.Refresh(auth_pb2.RefreshRequest(refresh_token=account.refresh_token)) for _ in range(20)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, auth_pb2.RefreshResponse)]
    errors = [failure(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert len(errors) == 19
    assert {e.code for e in errors} == {grpc.StatusCode.UNAUTHENTICATED}


async def test_refresh_with_garbage_is_invalid(auth):
    for token in ["", "rt_nope", "x" * 10_000, "eyJhbGciOi.x.y"]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=token))
        assert failure(err.value).reason == "REFRESH_TOKEN_INVALID"


async def test_logout_kills_refresh_and_access_token(auth, account):
    before = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=account.access_token))
    assert before.valid
    await auth.Logout(auth_pb2.LogoutRequest(), metadata=account.metadata)
    after = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=account.access_token))
    assert not after.valid
    assert after.reason == errors_pb2.ERROR_REASON_SESSION_REVOKED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=account.refresh_token))
    assert failure(err.value).code == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Logout(auth_pb2.LogoutRequest(), metadata=account.metadata)
    assert failure(err.value).reason == "SESSION_REVOKED"


async def test_logout_without_token_is_unauthenticated(auth):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Logout(auth_pb2.LogoutRequest())
    got = failure(err.value)
    assert got.code == grpc.StatusCode.UNAUTHENTICATED
    assert got.reason == "TOKEN_MISSING"


async def test_every_login_attempt_is_recorded(auth, account, services):
    with pytest.raises(grpc.aio.AioRpcError):
        await auth.Login(auth_pb2.LoginRequest(login=account.login, password="wrong password here"))
    async with services.db.reader() as uow:
        cur = await uow.conn.execute(
            """SELECT outcome, ip::text AS ip, user_agent, session_id
               FROM login_history WHERE user_id = %s ORDER BY id""",
            (account.user_id,),
        )
        rows = await cur.fetchall()
    assert [r["outcome"] for r in rows] == ["SUCCESS", "BAD_CREDENTIALS"]
    assert rows[0]["session_id"] is not None
    assert rows[0]["ip"].startswith("127.0.0.1")
    assert "grpc" in rows[0]["user_agent"]
