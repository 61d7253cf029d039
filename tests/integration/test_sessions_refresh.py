"""Refresh-token reuse, the optional retry grace window, and session lifetimes, over
real gRPC, PostgreSQL and Redis (including a server restart and a Redis FLUSHALL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from identity.domain.clock import SteppedClock
from identity.security import opaque
from identity.v1 import auth_pb2, errors_pb2
from tests.conftest import register_and_login
from tests.integration.harness import server_with
from tests.support import failure


async def _refresh(auth, token: str) -> auth_pb2.RefreshResponse:
    return await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=token))


async def _refresh_fails(auth, token: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _refresh(auth, token)
    got = failure(err.value)
    assert got.code == grpc.StatusCode.UNAUTHENTICATED
    return got.reason


async def _live_refresh_tokens(services, session_id: str) -> int:
    async with services.db.reader() as uow:
        cur = await uow.conn.execute(
            """SELECT count(*) AS n FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
               WHERE r.session_id = %s AND r.rotated_at IS NULL AND s.revoked_at IS NULL""",
            (session_id,),
        )
        row = await cur.fetchone()
    return int(row["n"])


async def test_reuse_after_rotation_kills_the_rotated_to_token_and_the_access_tokens(auth, account):
    rotated = await _refresh(auth, account.refresh_token)
    assert await _refresh_fails(auth, account.refresh_token) == "REFRESH_TOKEN_REUSED"
    assert await _refresh_fails(auth, rotated.refresh_token) == "SESSION_REVOKED"
    for access in (account.access_token, rotated.access_token):
        validated = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=access))
        assert validated.reason == errors_pb2.ERROR_REASON_SESSION_REVOKED


async def test_reuse_is_a_security_event_in_the_users_history(auth, account):
    survivor = await auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    await _refresh(auth, account.refresh_token)
    await _refresh_fails(auth, account.refresh_token)
    metadata = (("authorization", f"Bearer {survivor.access_token}"),)
    page = await auth.ListLoginHistory(auth_pb2.ListLoginHistoryRequest(), metadata=metadata)
    newest = page.entries[0]
    assert newest.outcome == auth_pb2.LOGIN_OUTCOME_REFRESH_REUSE
    assert newest.session_id == account.session_id
    assert newest.ip == "127.0.0.1"


async def test_twenty_concurrent_refreshes_one_success_at_most_one_live_token(auth, account, services):
    results = await asyncio.gather(
        *(_refresh(auth, account.refresh_token) for _ in range(20)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, auth_pb2.RefreshResponse)]
    assert len(winners) == 1
    assert await _live_refresh_tokens(services, account.session_id) <= 1


async def test_reuse_detection_survives_restart_and_redis_flushall(database_url, private_redis_url):
    async with server_with(database_url, redis_url=private_redis_url) as (auth, _):
        account = await register_and_login(auth)
        rotated = await _refresh(auth, account.refresh_token)
    async with server_with(database_url, redis_url=private_redis_url) as (auth, running):
        await running.services.redis.client.flushall()
        assert await _refresh_fails(auth, account.refresh_token) == "REFRESH_TOKEN_REUSED"
    async with server_with(database_url, redis_url=private_redis_url) as (auth, running):
        await running.services.redis.client.flushall()
        assert await _refresh_fails(auth, rotated.refresh_token) == "SESSION_REVOKED"
        validated = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=rotated.access_token))
        assert validated.reason == errors_pb2.ERROR_REASON_SESSION_REVOKED


# Lifetimes: each test runs a server of its own with a clock it steps forward.
SHORT_LIFETIMES = {"session_absolute_ttl": timedelta(minutes=10), "session_idle_ttl": timedelta(minutes=4)}


async def test_session_past_its_absolute_lifetime_refuses_refresh(database_url):
    clock = SteppedClock()
    async with server_with(database_url, clock=clock, **SHORT_LIFETIMES) as (auth, _):
        account = await register_and_login(auth)
        for _ in range(3):  # used every 3 minutes: never idle, but 10 minutes is the most
            clock.advance(timedelta(minutes=3))
            rotated = await _refresh(auth, account.refresh_token)
            account.refresh_token, account.access_token = rotated.refresh_token, rotated.access_token
        clock.advance(timedelta(minutes=1, seconds=1))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _refresh(auth, account.refresh_token)
        got = failure(err.value)
        assert got.reason == "SESSION_EXPIRED" and "maximum lifetime" in got.message
        # The refused refresh did not burn the token into a reuse.
        assert await _refresh_fails(auth, account.refresh_token) == "SESSION_EXPIRED"
        validated = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=account.access_token))
        assert validated.reason == errors_pb2.ERROR_REASON_SESSION_EXPIRED


async def test_idle_session_refuses_refresh(database_url):
    clock = SteppedClock()
    async with server_with(database_url, clock=clock, **SHORT_LIFETIMES) as (auth, _):
        account = await register_and_login(auth)
        clock.advance(timedelta(minutes=4, seconds=1))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _refresh(auth, account.refresh_token)
        got = failure(err.value)
        assert got.reason == "SESSION_EXPIRED" and "idle" in got.message


async def test_refresh_keeps_an_active_session_alive(database_url):
    clock = SteppedClock()
    async with server_with(database_url, clock=clock, **SHORT_LIFETIMES) as (auth, _):
        account = await register_and_login(auth)
        clock.advance(timedelta(minutes=3))
        rotated = await _refresh(auth, account.refresh_token)
        # Six minutes after login, but only three after the last use: still live.
        clock.advance(timedelta(minutes=3))
        again = await _refresh(auth, rotated.refresh_token)
        assert again.refresh_token not in {account.refresh_token, rotated.refresh_token}
        validated = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=again.access_token))
        assert validated.valid


# The retry grace window (off by default, above): never two live tokens.

GRACE = {"refresh_reuse_grace": timedelta(seconds=30)}


async def test_grace_retry_replaces_the_lost_token(database_url):
    async with server_with(database_url, **GRACE) as (auth, running):
        account = await register_and_login(auth)
        lost = await _refresh(auth, account.refresh_token)  # the client never saw this answer
        retried = await _refresh(auth, account.refresh_token)
        assert retried.refresh_token not in (lost.refresh_token, account.refresh_token)
        assert await _live_refresh_tokens(running.services, account.session_id) == 1
        # The answer it never received is dead; showing it now is reuse.
        next_one = await _refresh(auth, retried.refresh_token)
        assert await _live_refresh_tokens(running.services, account.session_id) == 1
        assert await _refresh_fails(auth, lost.refresh_token) == "REFRESH_TOKEN_REUSED"
        assert await _refresh_fails(auth, next_one.refresh_token) == "SESSION_REVOKED"


async def test_grace_does_not_cover_a_token_whose_successor_was_used(database_url):
    async with server_with(database_url, **GRACE) as (auth, _):
        account = await register_and_login(auth)
        second = await _refresh(auth, account.refresh_token)
        await _refresh(auth, second.refresh_token)
        assert await _refresh_fails(auth, account.refresh_token) == "REFRESH_TOKEN_REUSED"


async def test_grace_window_ends(database_url):
    clock = SteppedClock()
    async with server_with(database_url, clock=clock, **GRACE) as (auth, _):
        account = await register_and_login(auth)
        await _refresh(auth, account.refresh_token)
        clock.advance(timedelta(seconds=31))
        assert await _refresh_fails(auth, account.refresh_token) == "REFRESH_TOKEN_REUSED"


async def test_grace_under_twenty_concurrent_refreshes_leaves_one_live_token(database_url):
    async with server_with(database_url, **GRACE) as (auth, running):
        account = await register_and_login(auth)
        results = await asyncio.gather(
            *(_refresh(auth, account.refresh_token) for _ in range(20)), return_exceptions=True
        )
        issued = [r.refresh_token for r in results if isinstance(r, auth_pb2.RefreshResponse)]
        assert issued and len(set(issued)) == len(issued)
        assert await _live_refresh_tokens(running.services, account.session_id) == 1
        # Exactly one of the answers is that live token; every other one is dead.
        async with running.services.db.reader() as uow:
            cur = await uow.conn.execute(
                "SELECT token_hash FROM refresh_tokens WHERE session_id = %s AND rotated_at IS NULL",
                (account.session_id,),
            )
            live = {bytes(row["token_hash"]) for row in await cur.fetchall()}
        assert sum(opaque.digest(t) in live for t in issued) == 1
