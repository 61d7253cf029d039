"""ChangePassword and ChangeLogin over real gRPC, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from identity.v1 import auth_pb2, errors_pb2
from tests.conftest import Account, register_and_login
from tests.integration.harness import server_with
from tests.support import STRONG_PASSWORD, failure, new_login

NEW_PASSWORD = "a brand new passphrase 🎬 for the cinema"


async def _fails(call) -> object:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return failure(err.value)


async def _login(auth, login: str, password: str) -> auth_pb2.LoginResponse:
    return await auth.Login(auth_pb2.LoginRequest(login=login, password=password))


async def _change_password(auth, account: Account, current: str, new: str, keep: bool = False):
    return await auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(current_password=current, new_password=new, keep_other_sessions=keep),
        metadata=account.metadata,
    )


async def _valid(auth, access_token: str) -> bool:
    return (await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=access_token))).valid


async def _failed_logins(services, user_id: str) -> int:
    async with services.db.reader() as uow:
        cur = await uow.conn.execute("SELECT failed_logins FROM users WHERE id = %s", (user_id,))
        row = await cur.fetchone()
    return int(row["failed_logins"])


# ChangePassword


async def test_change_password_swaps_passwords_and_ends_other_sessions(auth, account):
    others = [await _login(auth, account.login, account.password) for _ in range(2)]
    reply = await _change_password(auth, account, account.password, NEW_PASSWORD)
    assert reply.revoked_count == 2
    assert (await _fails(_login(auth, account.login, account.password))).reason == "INVALID_CREDENTIALS"
    await _login(auth, account.login, NEW_PASSWORD)
    for other in others:
        assert not await _valid(auth, other.access_token)
        refused = await _fails(auth.Refresh(auth_pb2.RefreshRequest(refresh_token=other.refresh_token)))
        assert refused.reason == "SESSION_REVOKED"
    # The calling session stays, refresh token included.
    assert await _valid(auth, account.access_token)
    await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=account.refresh_token))


async def test_change_password_can_keep_other_sessions(auth, account):
    other = await _login(auth, account.login, account.password)
    reply = await _change_password(auth, account, account.password, NEW_PASSWORD, keep=True)
    assert reply.revoked_count == 0
    assert await _valid(auth, other.access_token)


async def test_wrong_current_password_is_invalid_argument_counted_and_recorded(auth, account, services):
    got = await _fails(_change_password(auth, account, "not my password at all", NEW_PASSWORD))
    assert (got.code, got.reason, got.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "PASSWORD_INCORRECT",
        ("current_password",),
    )
    assert await _failed_logins(services, account.user_id) == 1
    history = await auth.ListLoginHistory(auth_pb2.ListLoginHistoryRequest(), metadata=account.metadata)
    assert history.entries[0].outcome == auth_pb2.LOGIN_OUTCOME_BAD_CREDENTIALS
    assert history.entries[0].session_id == account.session_id
    # Nothing changed, and the caller's session survives a mistyped password.
    await _login(auth, account.login, account.password)
    assert await _valid(auth, account.access_token)
    await _change_password(auth, account, account.password, NEW_PASSWORD)
    assert await _failed_logins(services, account.user_id) == 0


async def test_reauthentication_respects_the_lockout(database_url):
    async with server_with(database_url, max_failed_logins=2) as (stub, _):
        account = await register_and_login(stub)
        outcomes = []
        for _ in range(4):
            outcomes.append(
                (await _fails(_change_password(stub, account, "wrong guess here", NEW_PASSWORD))).reason
            )
        assert outcomes == ["PASSWORD_INCORRECT", "PASSWORD_INCORRECT", "ACCOUNT_LOCKED", "ACCOUNT_LOCKED"]
        # Locked means locked: even the right password waits for an operator.
        assert (await _fails(_change_password(stub, account, account.password, NEW_PASSWORD))).reason == (
            "ACCOUNT_LOCKED"
        )


@pytest.mark.parametrize(
    ("new_password", "reason"),
    [
        ("short", "PASSWORD_TOO_SHORT"),
        ("password123", "PASSWORD_TOO_COMMON"),
        ("x" * 300, "PASSWORD_TOO_LONG"),
        ("", "INVALID_FIELD"),
    ],
)
async def test_new_password_follows_the_policy(auth, account, services, new_password, reason):
    got = await _fails(_change_password(auth, account, account.password, new_password))
    assert (got.code, got.reason, got.fields) == (grpc.StatusCode.INVALID_ARGUMENT, reason, ("new_password",))
    await _login(auth, account.login, account.password)
    assert await _failed_logins(services, account.user_id) == 0


async def test_new_password_must_not_contain_the_login(auth, account):
    got = await _fails(_change_password(auth, account, account.password, f"my {account.login.upper()} rocks"))
    assert (got.reason, got.fields) == ("PASSWORD_CONTAINS_LOGIN", ("new_password",))


async def test_missing_current_password_is_invalid_argument(auth, account):
    got = await _fails(_change_password(auth, account, "", NEW_PASSWORD))
    assert (got.code, got.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ("current_password",))


async def test_change_password_needs_a_live_session(auth, account):
    await auth.Logout(auth_pb2.LogoutRequest(), metadata=account.metadata)
    got = await _fails(_change_password(auth, account, account.password, NEW_PASSWORD))
    assert got.reason == "SESSION_REVOKED"
    await _login(auth, account.login, account.password)


# ChangeLogin


async def _change_login(auth, account: Account, new: str, password: str | None = None):
    return await auth.ChangeLogin(
        auth_pb2.ChangeLoginRequest(new_login=new, password=password or account.password),
        metadata=account.metadata,
    )


async def test_change_login_moves_the_account_to_the_new_login(auth, account):
    new = new_login("Renamed")
    reply = await _change_login(auth, account, f"  {new}  ")
    assert reply.user.login == new and reply.user.id == account.user_id
    assert (await _fails(_login(auth, account.login, account.password))).reason == "INVALID_CREDENTIALS"
    again = await _login(auth, new.lower(), account.password)
    assert again.user_id == account.user_id
    # History and sessions stay with the user.
    history = await auth.ListLoginHistory(auth_pb2.ListLoginHistoryRequest(), metadata=account.metadata)
    assert [e.session_id for e in history.entries][-1] == account.session_id
    assert await _valid(auth, account.access_token)
    # The old login is free for someone else now.
    await auth.Register(auth_pb2.RegisterRequest(login=account.login, password=STRONG_PASSWORD))


async def test_change_login_to_a_taken_or_lookalike_login_is_already_exists(auth, account):
    other = await register_and_login(auth)
    for taken in (
        other.login,
        other.login.upper(),
        "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in other.login),
    ):
        got = await _fails(_change_login(auth, account, taken))
        assert (got.code, got.reason) == (grpc.StatusCode.ALREADY_EXISTS, "LOGIN_TAKEN")
    await _login(auth, account.login, account.password)


async def test_changing_only_the_case_of_ones_own_login_is_allowed(auth, account):
    reply = await _change_login(auth, account, account.login.upper())
    assert reply.user.login == account.login.upper()


async def test_concurrent_changes_to_one_login_exactly_one_wins(auth):
    accounts = [await register_and_login(auth) for _ in range(8)]
    wanted = new_login("contested")
    results = await asyncio.gather(
        *(_change_login(auth, a, wanted) for a in accounts), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, auth_pb2.ChangeLoginResponse)]
    losers = [failure(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert {(f.code, f.reason) for f in losers} == {(grpc.StatusCode.ALREADY_EXISTS, "LOGIN_TAKEN")}
    assert len(losers) == 7


async def test_change_login_with_the_wrong_password_names_the_field(auth, account, services):
    got = await _fails(_change_login(auth, account, new_login(), "certainly not the password"))
    assert (got.code, got.reason, got.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "PASSWORD_INCORRECT",
        ("password",),
    )
    assert await _failed_logins(services, account.user_id) == 1
    await _login(auth, account.login, account.password)
    assert await _valid(auth, account.access_token)


@pytest.mark.parametrize("bad", ["", "ab", "has space", "pаypal", "x" * 65, "semi;colon"])
async def test_invalid_new_login_is_invalid_argument(auth, account, bad):
    got = await _fails(_change_login(auth, account, bad))
    assert (got.code, got.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ("new_login",))


async def test_new_login_inside_the_password_is_refused_only_after_reauthentication(auth, account):
    # A token thief cannot use this rule to learn what the password contains.
    wrong = await _fails(_change_login(auth, account, "horse", "wrong password entirely"))
    assert wrong.reason == "PASSWORD_INCORRECT"
    right = await _fails(_change_login(auth, account, "horse"))
    assert (right.reason, right.fields) == ("PASSWORD_CONTAINS_LOGIN", ("new_login",))


async def test_missing_password_is_invalid_argument(auth, account):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.ChangeLogin(auth_pb2.ChangeLoginRequest(new_login=new_login()), metadata=account.metadata)
    got = failure(err.value)
    assert (got.code, got.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ("password",))


async def test_validate_token_still_valid_after_login_change(auth, account):
    await _change_login(auth, account, new_login())
    validated = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=account.access_token))
    assert validated.valid and validated.reason == errors_pb2.ERROR_REASON_UNSPECIFIED


async def test_concurrent_login_changes_with_the_right_password_never_fail_reauthentication(auth, account):
    """Re-authentication reads the caller by the id of its token, once: a login changing
    under it cannot make the right password look wrong."""
    first, second = new_login("alt"), new_login("alt")
    results = await asyncio.gather(
        *(_change_login(auth, account, first if i % 2 else second) for i in range(30)),
        return_exceptions=True,
    )
    failures = [failure(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    unexpected = [
        r for r in results if not isinstance(r, grpc.aio.AioRpcError | auth_pb2.ChangeLoginResponse)
    ]
    assert unexpected == []
    assert [f.reason for f in failures if f.reason in {"INVALID_CREDENTIALS", "PASSWORD_INCORRECT"}] == []
    assert len(failures) < 30  # most of them changed the login
    final = (
        await auth.ChangeLogin(
            auth_pb2.ChangeLoginRequest(new_login=first, password=account.password), metadata=account.metadata
        )
    ).user.login
    assert final == first
    await _login(auth, first, account.password)
