"""Login with a second factor: Login answers a ticket and no tokens; VerifyMfa takes
the ticket once, with a TOTP code of the current or the previous step, each step once;
tokens then say how the user authenticated, also after a refresh."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import jwt
import pytest

from identity.v1 import auth_pb2
from tests.conftest import register_and_login
from tests.integration.harness import server_with
from tests.mfa_support import STEP, advance, code_at, enrol, outcomes, ticket, verify, wrong_code
from tests.rbac_support import identity_cli
from tests.support import bearer, failure


async def _history(services, user_id):
    async with services.db.reader() as uow:
        cur = await uow.conn.execute(
            "SELECT outcome, session_id FROM login_history WHERE user_id = %s ORDER BY id", (user_id,)
        )
        return await cur.fetchall()


async def _reason(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    got = failure(err.value)
    return got.code, got.reason


async def test_login_answers_a_ticket_and_no_tokens(mfa_auth, mfa_clock, services):
    enrolled = await enrol(mfa_auth, mfa_clock)
    account = enrolled.account
    answer = await mfa_auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    assert answer.mfa_required
    assert answer.mfa_ticket.startswith("mt_") and len(answer.mfa_ticket) >= 40
    assert not answer.access_token and not answer.refresh_token and not answer.session_id
    expires = answer.mfa_ticket_expire_time.ToDatetime(tzinfo=UTC)
    assert timedelta(minutes=4) < expires - mfa_clock.now() <= timedelta(minutes=5)
    rows = await _history(services, account.user_id)
    assert rows[-1]["outcome"] == "MFA_REQUIRED"
    async with services.db.reader() as uow:
        cur = await uow.conn.execute(
            "SELECT ticket_hash FROM mfa_tickets WHERE user_id = %s", (account.user_id,)
        )
        stored = [bytes(r["ticket_hash"]) for r in await cur.fetchall()]
    assert stored and all(answer.mfa_ticket.encode() not in h for h in stored)

    # A wrong password still answers as before: nothing tells it from an unknown login.
    assert await _reason(
        mfa_auth.Login(auth_pb2.LoginRequest(login=account.login, password="not the password"))
    ) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")


async def test_no_other_rpc_accepts_a_ticket(mfa_auth, mfa_clock):
    enrolled = await enrol(mfa_auth, mfa_clock)
    value = await ticket(mfa_auth, enrolled.account)
    code, _ = await _reason(mfa_auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=bearer(value)))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert await _reason(mfa_auth.Refresh(auth_pb2.RefreshRequest(refresh_token=value))) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "REFRESH_TOKEN_INVALID",
    )
    checked = await mfa_auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=value))
    assert not checked.valid
    code, _ = await _reason(
        mfa_auth.SetupTotp(
            auth_pb2.SetupTotpRequest(password=enrolled.account.password), metadata=bearer(value)
        )
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    # ...and the ticket still works where it belongs.
    await mfa_auth.VerifyMfa(verify(value, code_at(enrolled.secret, mfa_clock.now())))


async def test_verify_returns_tokens_saying_how_the_user_authenticated(mfa_auth, mfa_clock, services):
    enrolled = await enrol(mfa_auth, mfa_clock)
    value = await ticket(mfa_auth, enrolled.account)
    done = await mfa_auth.VerifyMfa(verify(value, code_at(enrolled.secret, mfa_clock.now())))
    assert done.token_type == "Bearer" and done.refresh_token.startswith("rt_")
    assert done.user_id == enrolled.account.user_id and done.expires_in > 0
    claims = jwt.decode(done.access_token, options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert abs(claims["auth_time"] - mfa_clock.now().timestamp()) < 5

    checked = await mfa_auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=done.access_token))
    assert checked.valid
    assert list(checked.claims.amr) == ["pwd", "otp", "mfa"]
    assert checked.claims.auth_time.seconds == claims["auth_time"]

    # A refresh later keeps both: the session says how it began.
    advance(mfa_clock, timedelta(minutes=3))
    rotated = await mfa_auth.Refresh(auth_pb2.RefreshRequest(refresh_token=done.refresh_token))
    again = await mfa_auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=rotated.access_token))
    assert list(again.claims.amr) == ["pwd", "otp", "mfa"]
    assert again.claims.auth_time.seconds == claims["auth_time"]
    assert again.claims.iat.seconds > claims["iat"]

    rows = await _history(services, enrolled.account.user_id)
    assert (rows[-1]["outcome"], str(rows[-1]["session_id"])) == ("MFA_SUCCESS", done.session_id)


async def test_password_only_tokens_say_pwd(mfa_auth):
    account = await register_and_login(mfa_auth)
    checked = await mfa_auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=account.access_token))
    assert list(checked.claims.amr) == ["pwd"]
    assert checked.claims.auth_time.seconds == checked.claims.iat.seconds


async def test_a_step_is_accepted_once(mfa_auth, mfa_clock, services):
    enrolled = await enrol(mfa_auth, mfa_clock)
    code = code_at(enrolled.secret, mfa_clock.now())
    await mfa_auth.VerifyMfa(verify(await ticket(mfa_auth, enrolled.account), code))
    second = await ticket(mfa_auth, enrolled.account)
    assert await _reason(mfa_auth.VerifyMfa(verify(second, code))) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "MFA_CODE_REUSED",
    )
    # The previous step is older than the one used: refused as well.
    older = code_at(enrolled.secret, mfa_clock.now() - STEP)
    _, reason = await _reason(mfa_auth.VerifyMfa(verify(second, older)))
    assert reason in {"MFA_CODE_REUSED", "MFA_CODE_INVALID"}
    # The next step works, on the same ticket (a wrong code does not spend it).
    advance(mfa_clock, STEP)
    await mfa_auth.VerifyMfa(verify(second, code_at(enrolled.secret, mfa_clock.now())))
    outcomes_ = [r["outcome"] for r in await _history(services, enrolled.account.user_id)]
    assert outcomes_.count("MFA_FAILED") == 2 and outcomes_[-1] == "MFA_SUCCESS"


async def test_twenty_parallel_calls_with_one_code_on_twenty_tickets_exactly_one_wins(mfa_auth, mfa_clock):
    enrolled = await enrol(mfa_auth, mfa_clock)
    tickets = await asyncio.gather(*(ticket(mfa_auth, enrolled.account) for _ in range(20)))
    code = code_at(enrolled.secret, mfa_clock.now())
    counted = await outcomes(mfa_auth.VerifyMfa(verify(t, code)) for t in tickets)
    assert counted["OK"] == 1
    # The others lost the step, or (past the per-account bound of 10) were not even checked.
    assert set(counted) <= {"OK", "MFA_CODE_REUSED", "MFA_TOO_MANY_ATTEMPTS"}
    assert counted["MFA_CODE_REUSED"] >= 9


async def test_twenty_parallel_calls_on_one_ticket_exactly_one_wins(mfa_auth, mfa_clock):
    enrolled = await enrol(mfa_auth, mfa_clock)
    value = await ticket(mfa_auth, enrolled.account)
    current, previous = (
        code_at(enrolled.secret, mfa_clock.now()),
        code_at(enrolled.secret, mfa_clock.now() - STEP),
    )
    # Two different valid codes race too: one ticket never yields two sessions.
    counted = await outcomes(mfa_auth.VerifyMfa(verify(value, (current, previous)[i % 2])) for i in range(20))
    assert counted["OK"] == 1
    assert set(counted) <= {"OK", "MFA_TICKET_INVALID", "MFA_CODE_REUSED", "MFA_TOO_MANY_ATTEMPTS"}


async def test_previous_step_is_accepted_and_older_ones_are_not(mfa_auth, mfa_clock):
    enrolled = await enrol(mfa_auth, mfa_clock)
    advance(mfa_clock, STEP)  # the previous step is no longer the confirming one
    value = await ticket(mfa_auth, enrolled.account)
    for steps_back in (2, 3, 10):
        assert await _reason(
            mfa_auth.VerifyMfa(verify(value, code_at(enrolled.secret, mfa_clock.now() - steps_back * STEP)))
        ) == (grpc.StatusCode.UNAUTHENTICATED, "MFA_CODE_INVALID")
    # A code of the next step (a fast client clock) is not accepted either, unless it
    # happens to equal an accepted one (one chance in 500000).
    accepted = {code_at(enrolled.secret, mfa_clock.now() - k * STEP) for k in (0, 1)}
    nxt = code_at(enrolled.secret, mfa_clock.now() + STEP)
    if nxt not in accepted:
        assert (await _reason(mfa_auth.VerifyMfa(verify(value, nxt))))[1] == "MFA_CODE_INVALID"
    # The previous step, on the same ticket (its fifth attempt), is accepted.
    await mfa_auth.VerifyMfa(verify(value, code_at(enrolled.secret, mfa_clock.now() - STEP)))


async def test_previous_step_accepted_with_skew_one(mfa_auth, mfa_clock):
    enrolled = await enrol(mfa_auth, mfa_clock)
    advance(mfa_clock, STEP)
    value = await ticket(mfa_auth, enrolled.account)
    await mfa_auth.VerifyMfa(verify(value, code_at(enrolled.secret, mfa_clock.now() - STEP)))


async def test_skew_zero_accepts_the_current_step_only(database_url, mfa_clock):
    async with server_with(database_url, clock=mfa_clock, totp_skew_steps=0) as (stub, _):
        enrolled = await enrol(stub, mfa_clock)
        advance(mfa_clock, STEP)
        value = await ticket(stub, enrolled.account)
        assert (
            await _reason(stub.VerifyMfa(verify(value, code_at(enrolled.secret, mfa_clock.now() - STEP))))
        )[1] == "MFA_CODE_INVALID"
        await stub.VerifyMfa(verify(value, code_at(enrolled.secret, mfa_clock.now())))


async def test_a_ticket_is_single_use(mfa_auth, mfa_clock):
    enrolled = await enrol(mfa_auth, mfa_clock)
    value = await ticket(mfa_auth, enrolled.account)
    await mfa_auth.VerifyMfa(verify(value, code_at(enrolled.secret, mfa_clock.now())))
    advance(mfa_clock, STEP)
    assert await _reason(mfa_auth.VerifyMfa(verify(value, code_at(enrolled.secret, mfa_clock.now())))) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "MFA_TICKET_INVALID",
    )


async def test_a_ticket_expires(mfa_auth, mfa_clock):
    enrolled = await enrol(mfa_auth, mfa_clock)
    value = await ticket(mfa_auth, enrolled.account)
    advance(mfa_clock, timedelta(minutes=5, seconds=1))
    assert await _reason(mfa_auth.VerifyMfa(verify(value, code_at(enrolled.secret, mfa_clock.now())))) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "MFA_TICKET_EXPIRED",
    )


async def test_a_ticket_takes_five_wrong_codes(mfa_auth, mfa_clock):
    enrolled = await enrol(mfa_auth, mfa_clock)
    value = await ticket(mfa_auth, enrolled.account)
    wrong = wrong_code(enrolled.secret, mfa_clock.now())
    for _ in range(5):
        assert await _reason(mfa_auth.VerifyMfa(verify(value, wrong))) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "MFA_CODE_INVALID",
        )
    # Spent: even the right code is refused; the client logs in again.
    assert await _reason(mfa_auth.VerifyMfa(verify(value, code_at(enrolled.secret, mfa_clock.now())))) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "MFA_TOO_MANY_ATTEMPTS",
    )
    await mfa_auth.VerifyMfa(
        verify(await ticket(mfa_auth, enrolled.account), code_at(enrolled.secret, mfa_clock.now()))
    )


async def test_unknown_tickets_and_bad_input(mfa_auth, mfa_clock):
    enrolled = await enrol(mfa_auth, mfa_clock)
    code = code_at(enrolled.secret, mfa_clock.now())
    for value in ("", "mt_nope", "rt_" + "a" * 43, "mt_" + "x" * 500):
        assert await _reason(mfa_auth.VerifyMfa(verify(value, code))) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "MFA_TICKET_INVALID",
        ), value
    value = await ticket(mfa_auth, enrolled.account)
    for request in (
        verify(value),
        verify(value, "12345"),
        verify(value, code, enrolled.recovery_codes[0]),
        verify(value, recovery_code="not-a-code"),
    ):
        code_, _ = await _reason(mfa_auth.VerifyMfa(request))
        assert code_ == grpc.StatusCode.INVALID_ARGUMENT
    # Bad input spent nothing: the ticket still works.
    await mfa_auth.VerifyMfa(verify(value, code))


async def test_a_totp_user_login_does_not_start_a_session_before_the_code(mfa_auth, mfa_clock, services):
    enrolled = await enrol(mfa_auth, mfa_clock)
    async with services.db.reader() as uow:
        cur = await uow.conn.execute(
            "SELECT count(*) AS n FROM sessions WHERE user_id = %s", (enrolled.account.user_id,)
        )
        before = (await cur.fetchone())["n"]
    await ticket(mfa_auth, enrolled.account)
    async with services.db.reader() as uow:
        cur = await uow.conn.execute(
            "SELECT count(*) AS n FROM sessions WHERE user_id = %s", (enrolled.account.user_id,)
        )
        after = (await cur.fetchone())["n"]
    assert before == after


def test_wrong_code_helper_avoids_nearby_steps():
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    now = datetime.now(UTC)
    assert wrong_code(secret, now) not in {code_at(secret, now + k * STEP) for k in range(-3, 4)}


async def test_a_ticket_dies_with_a_password_change_or_a_disabled_account(mfa_auth, mfa_clock, database_url):
    enrolled = await enrol(mfa_auth, mfa_clock)
    account = enrolled.account
    stolen = await ticket(mfa_auth, account)
    await mfa_auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(
            current_password=account.password, new_password="a brand new passphrase"
        ),
        metadata=account.metadata,
    )
    code = code_at(enrolled.secret, mfa_clock.now())
    assert await _reason(mfa_auth.VerifyMfa(verify(stolen, code))) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "MFA_TICKET_INVALID",
    )

    account.password = "a brand new passphrase"
    pending = await ticket(mfa_auth, account)
    result = await identity_cli(database_url, "users", "disable", "--login", account.login)
    assert result.exit_code == 0, result.output
    assert await _reason(mfa_auth.VerifyMfa(verify(pending, code))) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "ACCOUNT_DISABLED",
    )
