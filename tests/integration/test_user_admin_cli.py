"""`identity users disable|enable`: disabling ends every session at once, durably,
refuses logins, and takes every permission away; enabling restores the login."""

from __future__ import annotations

import grpc
import pytest

from identity.v1 import auth_pb2, errors_pb2, rbac_pb2
from tests.conftest import register_and_login
from tests.integration.harness import server_with
from tests.rbac_support import identity_cli
from tests.support import bearer, failure


async def test_disable_ends_sessions_refuses_login_and_enable_restores(rbac, database_url, private_redis_url):
    async with server_with(database_url, redis_url=private_redis_url) as (auth, running):
        await _disable_and_enable(auth, rbac, database_url, running.services)


async def _disable_and_enable(auth, rbac, database_url, services):
    account = await register_and_login(auth)
    second = await auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))

    result = await identity_cli(database_url, "users", "disable", "--login", account.login)
    assert result.exit_code == 0, result.output
    assert "2 session(s) ended" in result.output

    await services.redis.client.flushall()  # the server's own Redis: the record is PostgreSQL
    for token in (account.access_token, second.access_token):
        checked = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=token))
        assert not checked.valid and checked.reason == errors_pb2.ERROR_REASON_SESSION_REVOKED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=second.refresh_token))
    assert failure(err.value).code == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    assert failure(err.value).reason == "ACCOUNT_DISABLED"

    result = await identity_cli(database_url, "users", "enable", "--login", account.login)
    assert result.exit_code == 0, result.output
    again = await auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    own = await rbac.ListUserPermissions(
        rbac_pb2.ListUserPermissionsRequest(subject=rbac_pb2.Subject(user_id=account.user_id)),
        metadata=bearer(again.access_token),
    )
    assert list(own.permissions) == []


async def test_disable_unknown_login_is_a_clean_error(database_url):
    result = await identity_cli(database_url, "users", "disable", "--login", "nobody-here-at-all")
    assert result.exit_code == 1
    assert "USER_NOT_FOUND" in result.output
