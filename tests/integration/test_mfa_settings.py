"""DisableTotp and RegenerateRecoveryCodes re-authenticate with both factors (the code
may be a TOTP code or a recovery code, each used once); disabling ends the user's
other sessions, and regenerating replaces every recovery code."""

from __future__ import annotations

import grpc
import pytest

from identity.v1 import auth_pb2
from tests.conftest import register_and_login
from tests.mfa_support import STEP, advance, code_at, enrol, ticket, verify, wrong_code
from tests.support import failure


async def _failure(call):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return failure(err.value)


async def test_disable_needs_both_factors_and_ends_other_sessions(mfa_auth, mfa_clock, services):
    enrolled = await enrol(mfa_auth, mfa_clock)
    account = enrolled.account
    value = await ticket(mfa_auth, account)
    other = await mfa_auth.VerifyMfa(verify(value, code_at(enrolled.secret, mfa_clock.now())))
    advance(mfa_clock, STEP)
    code = code_at(enrolled.secret, mfa_clock.now())

    got = await _failure(
        mfa_auth.DisableTotp(
            auth_pb2.DisableTotpRequest(password="wrong password", code=code), metadata=account.metadata
        )
    )
    assert (got.code, got.reason, got.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "PASSWORD_INCORRECT",
        ("password",),
    )
    got = await _failure(
        mfa_auth.DisableTotp(
            auth_pb2.DisableTotpRequest(
                password=account.password, code=wrong_code(enrolled.secret, mfa_clock.now())
            ),
            metadata=account.metadata,
        )
    )
    assert (got.code, got.reason, got.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "MFA_CODE_INVALID",
        ("code",),
    )
    got = await _failure(
        mfa_auth.DisableTotp(
            auth_pb2.DisableTotpRequest(password=account.password), metadata=account.metadata
        )
    )
    assert (got.code, got.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ("code",))

    await mfa_auth.DisableTotp(
        auth_pb2.DisableTotpRequest(password=account.password, code=code), metadata=account.metadata
    )
    ended = await mfa_auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=other.access_token))
    assert not ended.valid
    kept = await mfa_auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=account.access_token))
    assert kept.valid
    plain = await mfa_auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    assert plain.access_token and not plain.mfa_required
    # The old ticket-era state is gone: a ticket taken before disabling is dead.
    got = await _failure(mfa_auth.VerifyMfa(verify(value, code)))
    assert got.reason == "MFA_TICKET_INVALID"

    got = await _failure(
        mfa_auth.DisableTotp(
            auth_pb2.DisableTotpRequest(password=account.password, code=code), metadata=account.metadata
        )
    )
    assert (got.code, got.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MFA_NOT_ENABLED")
    async with services.db.reader() as uow:
        cur = await uow.conn.execute(
            "SELECT outcome FROM login_history WHERE user_id = %s ORDER BY id", (account.user_id,)
        )
        assert "MFA_DISABLED" in [r["outcome"] for r in await cur.fetchall()]


async def test_a_code_used_to_disable_is_not_used_again(mfa_auth, mfa_clock):
    enrolled = await enrol(mfa_auth, mfa_clock)
    account = enrolled.account
    code = code_at(enrolled.secret, mfa_clock.now())
    await mfa_auth.VerifyMfa(verify(await ticket(mfa_auth, account), code))
    got = await _failure(
        mfa_auth.RegenerateRecoveryCodes(
            auth_pb2.RegenerateRecoveryCodesRequest(password=account.password, code=code),
            metadata=account.metadata,
        )
    )
    assert (got.code, got.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MFA_CODE_REUSED")


async def test_disable_with_a_recovery_code(mfa_auth, mfa_clock):
    enrolled = await enrol(mfa_auth, mfa_clock)
    account = enrolled.account
    await mfa_auth.DisableTotp(
        auth_pb2.DisableTotpRequest(password=account.password, code=enrolled.recovery_codes[0]),
        metadata=account.metadata,
    )
    plain = await mfa_auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    assert not plain.mfa_required


async def test_regenerate_replaces_every_recovery_code(mfa_auth, mfa_clock):
    enrolled = await enrol(mfa_auth, mfa_clock)
    account = enrolled.account
    fresh = await mfa_auth.RegenerateRecoveryCodes(
        auth_pb2.RegenerateRecoveryCodesRequest(password=account.password, code=enrolled.recovery_codes[0]),
        metadata=account.metadata,
    )
    assert len(fresh.recovery_codes) == 10
    assert not set(fresh.recovery_codes) & set(enrolled.recovery_codes)
    for old in enrolled.recovery_codes[1:3]:
        got = await _failure(mfa_auth.VerifyMfa(verify(await ticket(mfa_auth, account), recovery_code=old)))
        assert got.reason == "MFA_CODE_INVALID"
    done = await mfa_auth.VerifyMfa(
        verify(await ticket(mfa_auth, account), recovery_code=fresh.recovery_codes[0])
    )
    assert done.recovery_codes_remaining == 9
    # The code that authorised the regeneration was used once and for all.
    got = await _failure(
        mfa_auth.RegenerateRecoveryCodes(
            auth_pb2.RegenerateRecoveryCodesRequest(
                password=account.password, code=enrolled.recovery_codes[0]
            ),
            metadata=account.metadata,
        )
    )
    assert got.reason == "MFA_CODE_INVALID"


async def test_settings_of_an_account_without_totp(mfa_auth):
    account = await register_and_login(mfa_auth)
    for call in (
        mfa_auth.DisableTotp(
            auth_pb2.DisableTotpRequest(password=account.password, code="123456"), metadata=account.metadata
        ),
        mfa_auth.RegenerateRecoveryCodes(
            auth_pb2.RegenerateRecoveryCodesRequest(password=account.password, code="123456"),
            metadata=account.metadata,
        ),
    ):
        got = await _failure(call)
        assert (got.code, got.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MFA_NOT_ENABLED")
