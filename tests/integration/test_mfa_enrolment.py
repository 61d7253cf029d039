"""TOTP enrolment over real gRPC, PostgreSQL and Redis: SetupTotp re-authenticates and
returns a pending secret (URI, QR code); ConfirmTotp activates it with a first code,
returns the recovery codes once, and ends the user's other sessions."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import grpc
import pytest

from identity.v1 import auth_pb2
from tests.conftest import register_and_login
from tests.mfa_support import STEP, advance, code_at, enrol, wrong_code
from tests.support import failure


async def _setup(auth, account):
    return await auth.SetupTotp(
        auth_pb2.SetupTotpRequest(password=account.password), metadata=account.metadata
    )


async def test_setup_returns_a_strong_pending_secret_its_uri_and_a_qr_code(mfa_auth, mfa_clock, services):
    account = await register_and_login(mfa_auth)
    setup = await _setup(mfa_auth, account)
    assert len(base64.b32decode(setup.secret)) >= 20  # 160 bits or more
    uri = urlparse(setup.provisioning_uri)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert account.login in uri.path
    assert parse_qs(uri.query)["secret"] == [setup.secret]
    assert parse_qs(uri.query)["issuer"] == ["identity"]
    assert setup.qr_code_svg.lstrip().startswith("<svg") and "</svg>" in setup.qr_code_svg
    expires = setup.expire_time.ToDatetime().replace(tzinfo=mfa_clock.now().tzinfo)
    assert timedelta(minutes=9) < expires - mfa_clock.now() <= timedelta(minutes=10)

    async with services.db.reader() as uow:
        cur = await uow.conn.execute(
            "SELECT secret_encrypted, confirmed_at FROM totp_factors WHERE user_id = %s", (account.user_id,)
        )
        row = await cur.fetchone()
    assert row["confirmed_at"] is None
    stored = bytes(row["secret_encrypted"])
    assert setup.secret.encode() not in stored and base64.b32decode(setup.secret) not in stored
    # Pending is not active: the password alone still logs in.
    again = await mfa_auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    assert again.access_token and not again.mfa_required


async def test_setup_needs_the_password_and_a_token(mfa_auth):
    account = await register_and_login(mfa_auth)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mfa_auth.SetupTotp(
            auth_pb2.SetupTotpRequest(password="not the password"), metadata=account.metadata
        )
    got = failure(err.value)
    assert (got.code, got.reason, got.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "PASSWORD_INCORRECT",
        ("password",),
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mfa_auth.SetupTotp(auth_pb2.SetupTotpRequest(password=account.password))
    assert failure(err.value).reason == "TOKEN_MISSING"


async def test_a_new_setup_replaces_the_pending_secret(mfa_auth, mfa_clock):
    account = await register_and_login(mfa_auth)
    first = await _setup(mfa_auth, account)
    second = await _setup(mfa_auth, account)
    assert first.secret != second.secret
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mfa_auth.ConfirmTotp(
            auth_pb2.ConfirmTotpRequest(code=code_at(first.secret, mfa_clock.now())),
            metadata=account.metadata,
        )
    got = failure(err.value)
    assert (got.code, got.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MFA_CODE_INVALID")
    confirmed = await mfa_auth.ConfirmTotp(
        auth_pb2.ConfirmTotpRequest(code=code_at(second.secret, mfa_clock.now())), metadata=account.metadata
    )
    assert len(confirmed.recovery_codes) == 10


async def test_a_pending_setup_expires(mfa_auth, mfa_clock):
    account = await register_and_login(mfa_auth)
    setup = await _setup(mfa_auth, account)
    advance(mfa_clock, timedelta(minutes=10, seconds=1))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mfa_auth.ConfirmTotp(
            auth_pb2.ConfirmTotpRequest(code=code_at(setup.secret, mfa_clock.now())),
            metadata=account.metadata,
        )
    got = failure(err.value)
    assert (got.code, got.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MFA_NOT_PENDING")


async def test_confirm_without_setup_and_with_bad_input(mfa_auth, mfa_clock):
    account = await register_and_login(mfa_auth)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mfa_auth.ConfirmTotp(auth_pb2.ConfirmTotpRequest(code="123456"), metadata=account.metadata)
    assert failure(err.value).reason == "MFA_NOT_PENDING"
    await _setup(mfa_auth, account)
    for bad in ("", "12345", "1234567", "abcdef", "9" * 500):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await mfa_auth.ConfirmTotp(auth_pb2.ConfirmTotpRequest(code=bad), metadata=account.metadata)
        got = failure(err.value)
        assert (got.code, got.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ("code",)), bad


async def test_confirm_accepts_the_previous_step_but_not_an_older_one(mfa_auth, mfa_clock):
    account = await register_and_login(mfa_auth)
    setup = await _setup(mfa_auth, account)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mfa_auth.ConfirmTotp(
            auth_pb2.ConfirmTotpRequest(code=code_at(setup.secret, mfa_clock.now() - 2 * STEP)),
            metadata=account.metadata,
        )
    assert failure(err.value).reason == "MFA_CODE_INVALID"
    await mfa_auth.ConfirmTotp(
        auth_pb2.ConfirmTotpRequest(code=code_at(setup.secret, mfa_clock.now() - STEP)),
        metadata=account.metadata,
    )


async def test_confirm_enables_returns_recovery_codes_once_and_ends_other_sessions(
    mfa_auth, mfa_clock, services
):
    account = await register_and_login(mfa_auth)
    other = await mfa_auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    enrolled = await enrol(mfa_auth, mfa_clock, account)

    codes = enrolled.recovery_codes
    assert len(codes) == 10 == len(set(codes))
    assert all(re.fullmatch(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}", c) for c in codes)  # 80 bits each
    async with services.db.reader() as uow:
        cur = await uow.conn.execute(
            "SELECT code_hash FROM recovery_codes WHERE user_id = %s", (account.user_id,)
        )
        stored = [bytes(r["code_hash"]) for r in await cur.fetchall()]
        cur = await uow.conn.execute(
            "SELECT outcome FROM login_history WHERE user_id = %s ORDER BY id", (account.user_id,)
        )
        history = [r["outcome"] for r in await cur.fetchall()]
    assert len(stored) == 10
    assert not any(c.replace("-", "").encode() in h for c in codes for h in stored)
    assert history[-1] == "MFA_ENABLED"

    ended = await mfa_auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=other.access_token))
    assert not ended.valid
    kept = await mfa_auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=account.access_token))
    assert kept.valid

    # What shows a user shows the second factor.
    renamed = await mfa_auth.ChangeLogin(
        auth_pb2.ChangeLoginRequest(new_login=account.login + "-x", password=account.password),
        metadata=account.metadata,
    )
    assert renamed.user.mfa_enabled

    # Active: setup and confirm again are refused with a reason.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _setup(mfa_auth, account)
    got = failure(err.value)
    assert (got.code, got.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MFA_ALREADY_ENABLED")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mfa_auth.ConfirmTotp(
            auth_pb2.ConfirmTotpRequest(code=code_at(enrolled.secret, mfa_clock.now())),
            metadata=account.metadata,
        )
    assert failure(err.value).reason == "MFA_ALREADY_ENABLED"


async def test_a_pending_setup_takes_five_wrong_codes_then_starts_over(mfa_auth, mfa_clock):
    account = await register_and_login(mfa_auth)
    setup = await _setup(mfa_auth, account)
    wrong = wrong_code(setup.secret, mfa_clock.now())
    for _ in range(5):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await mfa_auth.ConfirmTotp(auth_pb2.ConfirmTotpRequest(code=wrong), metadata=account.metadata)
        assert failure(err.value).reason == "MFA_CODE_INVALID"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mfa_auth.ConfirmTotp(
            auth_pb2.ConfirmTotpRequest(code=code_at(setup.secret, mfa_clock.now())),
            metadata=account.metadata,
        )
    assert failure(err.value).reason == "MFA_NOT_PENDING"
    await enrol(mfa_auth, mfa_clock, account)
