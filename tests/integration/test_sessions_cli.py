"""`identity sessions list|revoke` for support staff, against the suite's database."""

from __future__ import annotations

import uuid

from identity.v1 import auth_pb2, errors_pb2
from tests.conftest import register_and_login
from tests.integration.harness import server_with
from tests.rbac_support import identity_cli as run_cli


async def _valid(auth, access_token: str) -> bool:
    return (await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=access_token))).valid


async def test_sessions_list_shows_live_sessions_by_login(auth, database_url):
    account = await register_and_login(auth)
    second = await auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    # Any spelling that canonicalises to the login finds the user.
    result = await run_cli(database_url, "sessions", "list", "--login", account.login.upper())
    assert result.exit_code == 0, result.output
    assert f"user {account.login} ({account.user_id}): 2 live session(s)" in result.output
    lines = result.output.splitlines()
    assert lines[2].startswith(second.session_id) and lines[3].startswith(account.session_id)
    assert "127.0.0.1" in lines[2]


async def test_sessions_revoke_one_by_id(auth, database_url):
    account = await register_and_login(auth)
    second = await auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    result = await run_cli(
        database_url, "sessions", "revoke", "--login", account.login, "--session", second.session_id
    )
    assert result.exit_code == 0, result.output
    assert "revoked 1 session(s)" in result.output
    assert not await _valid(auth, second.access_token)
    assert await _valid(auth, account.access_token)


async def test_sessions_revoke_all(database_url, private_redis_url):
    async with server_with(database_url, redis_url=private_redis_url) as (auth, running):
        await _revoke_all_survives_losing_redis(auth, database_url, running.services)


async def _revoke_all_survives_losing_redis(auth, database_url, services):
    account = await register_and_login(auth)
    second = await auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    result = await run_cli(database_url, "sessions", "revoke", "--login", account.login, "--all")
    assert result.exit_code == 0, result.output
    assert "revoked 2 session(s)" in result.output
    await services.redis.client.flushall()  # the server's own, private Redis
    for token in (account.access_token, second.access_token):
        validated = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=token))
        assert validated.reason == errors_pb2.ERROR_REASON_SESSION_REVOKED
    listed = await run_cli(database_url, "sessions", "list", "--login", account.login)
    assert "0 live session(s)" in listed.output


async def test_sessions_revoke_refuses_wrong_or_ambiguous_input(auth, database_url):
    account = await register_and_login(auth)
    victim = await register_and_login(auth)
    neither = await run_cli(database_url, "sessions", "revoke", "--login", account.login)
    both = await run_cli(
        database_url, "sessions", "revoke", "--login", account.login, "--all", "--session", account.session_id
    )
    assert neither.exit_code == both.exit_code == 2
    # A session of another user is not found under this login, and stays alive.
    foreign = await run_cli(
        database_url, "sessions", "revoke", "--login", account.login, "--session", victim.session_id
    )
    assert foreign.exit_code == 1 and "SESSION_NOT_FOUND" in foreign.output
    assert await _valid(auth, victim.access_token)
    malformed = await run_cli(
        database_url, "sessions", "revoke", "--login", account.login, "--session", "nope"
    )
    assert malformed.exit_code == 1 and "not a valid session id" in malformed.output
    unknown = await run_cli(database_url, "sessions", "list", "--login", f"ghost-{uuid.uuid4().hex[:8]}")
    assert unknown.exit_code == 1 and "USER_NOT_FOUND" in unknown.output
