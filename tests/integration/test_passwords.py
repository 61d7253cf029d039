"""Password handling through the real RPCs: no truncation, Unicode, same answers."""

from __future__ import annotations

import statistics
import time

import grpc
import pytest

from identity.v1 import auth_pb2
from tests.support import failure, new_login


async def _register(auth, password: str) -> str:
    login = new_login()
    await auth.Register(auth_pb2.RegisterRequest(login=login, password=password))
    return login


async def _login_fails(auth, login: str, password: str) -> bool:
    try:
        await auth.Login(auth_pb2.LoginRequest(login=login, password=password))
    except grpc.aio.AioRpcError as err:
        assert failure(err).reason == "INVALID_CREDENTIALS"
        return True
    return False


async def test_first_72_bytes_alone_never_log_in(auth):
    password = "a" * 72 + "-and-the-rest-matters"
    login = await _register(auth, password)
    assert await _login_fails(auth, login, "a" * 72)
    assert await _login_fails(auth, login, "a" * 72 + "-and-the-rest-differs")
    assert not await _login_fails(auth, login, password)


async def test_sixty_four_emoji_password_works(auth):
    password = "🎬🍿" * 32
    login = await _register(auth, password)
    assert not await _login_fails(auth, login, password)
    assert await _login_fails(auth, login, "🎬🍿" * 31 + "🎬🎬")


async def test_nfkc_equivalent_password_logs_in(auth):
    login = await _register(auth, "ﬁlm night 2026")
    assert not await _login_fails(auth, login, "film night 2026")


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "PASSWORD_TOO_SHORT"),
        ("password123", "PASSWORD_TOO_COMMON"),
        ("x" * 300, "PASSWORD_TOO_LONG"),
    ],
)
async def test_weak_password_is_refused_with_reason_and_field(auth, password, reason):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Register(auth_pb2.RegisterRequest(login=new_login(), password=password))
    got = failure(err.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert got.reason == reason
    assert got.fields == ("password",)


async def test_password_containing_login_is_refused(auth):
    login = new_login("moviefan")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Register(auth_pb2.RegisterRequest(login=login, password=f"my {login.upper()} pass"))
    assert failure(err.value).reason == "PASSWORD_CONTAINS_LOGIN"


async def test_bad_login_and_email_name_their_field(auth):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Register(auth_pb2.RegisterRequest(login="a b", password="correct horse battery"))
    assert failure(err.value).fields == ("login",)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Register(
            auth_pb2.RegisterRequest(login=new_login(), password="correct horse battery", email="nope")
        )
    assert failure(err.value).fields == ("email",)


async def test_unknown_login_takes_as_long_as_wrong_password(auth):
    """A dummy hash is checked for unknown logins. Compared as medians of
    interleaved samples; bcrypt dominates both paths (cost 4 in tests)."""
    login = await _register(auth, "correct horse battery")
    known, unknown = [], []
    for _ in range(15):
        for bucket, name in ((known, login), (unknown, new_login("ghost"))):
            started = time.perf_counter()
            assert await _login_fails(auth, name, "wrong horse battery")
            bucket.append(time.perf_counter() - started)
    a, b = statistics.median(known), statistics.median(unknown)
    # Without the dummy hash the unknown path skips bcrypt entirely and is several times faster.
    assert b > a * 0.5, (a, b)
