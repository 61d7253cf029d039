"""Guessing is bounded per account, not per ticket: however many tickets are opened and
however many calls run at once, at most IDENTITY_MFA_FAILURES_PER_WINDOW wrong codes
are checked per window, and IDENTITY_MFA_LOCK_THRESHOLD consecutive ones lock the
second factor durably until a password login after the wait, or an operator reset.
Recovery codes work once each, also under parallel use."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import jwt
import pytest

from identity.v1 import auth_pb2
from tests.integration.harness import server_with
from tests.mfa_support import STEP, advance, code_at, enrol, outcomes, ticket, verify, wrong_code
from tests.rbac_support import identity_cli
from tests.support import failure

WINDOW = timedelta(minutes=15)


async def _history(services, user_id) -> list[str]:
    async with services.db.reader() as uow:
        cur = await uow.conn.execute(
            "SELECT outcome FROM login_history WHERE user_id = %s ORDER BY id", (user_id,)
        )
        return [r["outcome"] for r in await cur.fetchall()]


async def test_fifty_parallel_tickets_get_no_more_than_the_per_account_limit(mfa_auth, mfa_clock, services):
    enrolled = await enrol(mfa_auth, mfa_clock)
    tickets = await asyncio.gather(*(ticket(mfa_auth, enrolled.account) for _ in range(50)))
    wrong = wrong_code(enrolled.secret, mfa_clock.now())
    counted = await outcomes(mfa_auth.VerifyMfa(verify(t, wrong)) for t in tickets)
    assert counted == {"MFA_CODE_INVALID": 10, "MFA_TOO_MANY_ATTEMPTS": 40}

    # Within the window even the right code on a fresh ticket is not looked at.
    fresh = await ticket(mfa_auth, enrolled.account)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mfa_auth.VerifyMfa(verify(fresh, code_at(enrolled.secret, mfa_clock.now())))
    got = failure(err.value)
    assert (got.code, got.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "MFA_TOO_MANY_ATTEMPTS")
    assert 0 < got.retry_seconds <= WINDOW.total_seconds() + 1
    # Once the window is over, the account may try again.
    advance(mfa_clock, WINDOW)
    await mfa_auth.VerifyMfa(
        verify(await ticket(mfa_auth, enrolled.account), code_at(enrolled.secret, mfa_clock.now()))
    )
    history = await _history(services, enrolled.account.user_id)
    assert history.count("MFA_FAILED") == 10
    assert history.count("THROTTLED") == 41


async def test_consecutive_wrong_codes_lock_the_second_factor_until_a_password_login_after_the_wait(
    mfa_auth, mfa_clock, services, database_url
):
    enrolled = await enrol(mfa_auth, mfa_clock)
    account = enrolled.account
    for _ in range(2):  # two windows of 10 wrong codes: 20 in a row
        tickets = await asyncio.gather(*(ticket(mfa_auth, account) for _ in range(15)))
        wrong = wrong_code(enrolled.secret, mfa_clock.now())
        counted = await outcomes(mfa_auth.VerifyMfa(verify(t, wrong)) for t in tickets)
        assert counted["MFA_CODE_INVALID"] == 10
        advance(mfa_clock, WINDOW)
    assert "MFA_LOCKED" in await _history(services, account.user_id)

    # Locked: a correct password gets no ticket, and the lock outlives any window and
    # the process (another server, with nothing in memory, sees it).
    advance(mfa_clock, timedelta(minutes=30))
    async with server_with(database_url, clock=mfa_clock) as (other, _):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await other.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    got = failure(err.value)
    assert (got.code, got.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "MFA_LOCKED")
    assert 0 < got.retry_seconds <= 3600

    # After the wait, a correct password login opens it again.
    advance(mfa_clock, timedelta(minutes=31))
    value = await ticket(mfa_auth, account)
    await mfa_auth.VerifyMfa(verify(value, code_at(enrolled.secret, mfa_clock.now())))


async def test_a_locked_second_factor_refuses_tickets_opened_before_the_lock(database_url, mfa_clock):
    async with server_with(database_url, clock=mfa_clock, mfa_lock_threshold=10) as (stub, _):
        enrolled = await enrol(stub, mfa_clock)
        early = await ticket(stub, enrolled.account)
        tickets = await asyncio.gather(*(ticket(stub, enrolled.account) for _ in range(12)))
        wrong = wrong_code(enrolled.secret, mfa_clock.now())
        counted = await outcomes(stub.VerifyMfa(verify(t, wrong)) for t in tickets)
        assert counted == {"MFA_CODE_INVALID": 10, "MFA_LOCKED": 2}
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.VerifyMfa(verify(early, code_at(enrolled.secret, mfa_clock.now())))
        got = failure(err.value)
        assert (got.code, got.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "MFA_LOCKED")


async def test_operator_reset_opens_a_locked_factor_removes_it_and_ends_sessions(
    mfa_auth, mfa_clock, services, database_url
):
    enrolled = await enrol(mfa_auth, mfa_clock)
    account = enrolled.account
    for _ in range(2):
        tickets = await asyncio.gather(*(ticket(mfa_auth, account) for _ in range(10)))
        wrong = wrong_code(enrolled.secret, mfa_clock.now())
        await outcomes(mfa_auth.VerifyMfa(verify(t, wrong)) for t in tickets)
        advance(mfa_clock, WINDOW)

    shown = await identity_cli(database_url, "users", "show", "--login", account.login)
    assert shown.exit_code == 0, shown.output
    assert "mfa:            on (10 recovery code(s) left)" in shown.output
    assert "mfa locked:     since" in shown.output

    result = await identity_cli(database_url, "users", "mfa-reset", "--login", account.login)
    assert result.exit_code == 0, result.output
    assert "removed TOTP and recovery codes; 1 session(s) ended" in result.output
    checked = await mfa_auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=account.access_token))
    assert not checked.valid
    again = await mfa_auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    assert again.access_token and not again.mfa_required
    assert "MFA_RESET" in await _history(services, account.user_id)
    async with services.db.reader() as uow:
        cur = await uow.conn.execute(
            "SELECT (SELECT count(*) FROM recovery_codes WHERE user_id = %(u)s) AS codes,"
            " (SELECT count(*) FROM totp_factors WHERE user_id = %(u)s) AS factors",
            {"u": account.user_id},
        )
        row = await cur.fetchone()
    assert (row["codes"], row["factors"]) == (0, 0)
    shown = await identity_cli(database_url, "users", "show", "--login", account.login)
    assert "mfa:            off" in shown.output and "mfa locked" not in shown.output

    missing = await identity_cli(database_url, "users", "mfa-reset", "--login", "nobody-here-at-all")
    assert missing.exit_code == 1 and "USER_NOT_FOUND" in missing.output


async def test_a_recovery_code_works_once_under_parallel_use(database_url, mfa_clock, services):
    async with server_with(database_url, clock=mfa_clock, mfa_failures_per_window=100) as (stub, _):
        enrolled = await enrol(stub, mfa_clock)
        tickets = await asyncio.gather(*(ticket(stub, enrolled.account) for _ in range(20)))
        code = enrolled.recovery_codes[3]
        results = await asyncio.gather(
            *(stub.VerifyMfa(verify(t, recovery_code=code)) for t in tickets), return_exceptions=True
        )
        winners = [r for r in results if isinstance(r, auth_pb2.VerifyMfaResponse)]
        losers = [failure(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(winners) == 1
        assert {(f.code, f.reason) for f in losers} == {(grpc.StatusCode.UNAUTHENTICATED, "MFA_CODE_INVALID")}
        assert winners[0].recovery_codes_remaining == 9
        claims = jwt.decode(winners[0].access_token, options={"verify_signature": False})
        assert claims["amr"] == ["pwd", "mfa"]

        # Typed in upper case without dashes it is the same code: used.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.VerifyMfa(
                verify(await ticket(stub, enrolled.account), recovery_code=code.replace("-", "").upper())
            )
        assert failure(err.value).reason == "MFA_CODE_INVALID"
        # Another one works, and says what is left.
        done = await stub.VerifyMfa(
            verify(await ticket(stub, enrolled.account), recovery_code=enrolled.recovery_codes[4])
        )
        assert done.recovery_codes_remaining == 8
        # A TOTP login says nothing about recovery codes.
        advance(mfa_clock, STEP)
        done = await stub.VerifyMfa(
            verify(await ticket(stub, enrolled.account), code_at(enrolled.secret, mfa_clock.now()))
        )
        assert done.recovery_codes_remaining == 0
