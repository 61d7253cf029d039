"""Login, the one credential check, tokens and sessions, on fakes and a stepped clock."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta

import jwt
import pytest

from identity.domain.errors import (
    AccountLocked,
    InvalidCredentials,
    PasswordIncorrect,
    RefreshTokenReused,
    SessionExpired,
    SessionRevoked,
    Throttled,
    TokenExpired,
    TokenRejected,
)
from identity.domain.models import ClientInfo, LoginOutcome, Principal
from identity.security.keyring import load_private_key
from identity.security.secretbox import SecretBox
from tests.fakes import FAST_SECRET, FastServices, fast_services

CLIENT = ClientInfo(ip="192.0.2.7", user_agent="fast-tier")
PASSWORD = "correct horse battery staple"


async def _user(fast: FastServices, login: str = "ann") -> uuid.UUID:
    return (await fast.auth.register(login, PASSWORD, "")).id


async def test_login_issues_tokens_records_success_and_resets_the_count(fast: FastServices) -> None:
    user_id = await _user(fast)
    with pytest.raises(InvalidCredentials):
        await fast.auth.login("ann", "not the password", CLIENT)
    issued = await fast.auth.login("Ann", PASSWORD, CLIENT)
    assert issued.user_id == user_id and issued.access_token and issued.refresh_token.startswith("rt_")
    assert fast.db.history(user_id) == [LoginOutcome.BAD_CREDENTIALS, LoginOutcome.SUCCESS]
    async with fast.db.reader() as uow:
        assert await uow.users.failed_logins(user_id) == 0
    claims = await fast.tokens.validate(issued.access_token)
    assert (claims.subject, claims.session_id) == (user_id, issued.session_id)


async def test_unknown_login_costs_a_hash_and_answers_like_a_wrong_password(fast: FastServices) -> None:
    await _user(fast)
    with pytest.raises(InvalidCredentials) as unknown:
        await fast.auth.login("nobody-here", PASSWORD, CLIENT)
    assert fast.hasher.verifications == 1  # the dummy hash: same work as a wrong password
    with pytest.raises(InvalidCredentials) as wrong:
        await fast.auth.login("ann", "not the password", CLIENT)
    assert fast.hasher.verifications == 2
    assert (unknown.value.reason, unknown.value.message) == (wrong.value.reason, wrong.value.message)
    assert fast.db.history(None) == [LoginOutcome.BAD_CREDENTIALS]


async def test_a_throttled_attempt_computes_no_hash_and_counts_no_failure(key_ring) -> None:
    fast = fast_services(key_ring, per_account=2)
    user_id = await _user(fast)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await fast.auth.login("ann", "not the password", CLIENT)
    with pytest.raises(Throttled) as throttled:
        await fast.auth.login("ann", "not the password", CLIENT)
    assert throttled.value.retry_after_seconds > 0
    assert fast.hasher.verifications == 2
    async with fast.db.reader() as uow:
        assert await uow.users.failed_logins(user_id) == 2
    assert fast.db.history(user_id)[-1] == LoginOutcome.THROTTLED
    # The window passes: attempts are counted again.
    fast.clock.advance(timedelta(minutes=16))
    await fast.auth.login("ann", PASSWORD, CLIENT)


async def test_the_durable_limit_locks_even_the_right_password(key_ring) -> None:
    fast = fast_services(key_ring, max_failed_logins=2)
    user_id = await _user(fast)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await fast.auth.login("ann", "not the password", CLIENT)
    with pytest.raises(InvalidCredentials):
        await fast.auth.login("ann", PASSWORD, CLIENT)
    assert fast.db.history(user_id)[-1] == LoginOutcome.LOCKED_OUT
    async with fast.db.transaction() as uow:
        await uow.users.unlock(user_id)
    await fast.auth.login("ann", PASSWORD, CLIENT)


async def test_a_locked_account_answers_like_an_unknown_login(key_ring) -> None:
    fast = fast_services(key_ring, max_failed_logins=2)
    user_id = await _user(fast)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await fast.auth.login("ann", "not the password", CLIENT)
    before = fast.hasher.verifications
    with pytest.raises(InvalidCredentials) as locked:
        await fast.auth.login("ann", PASSWORD, CLIENT)
    with pytest.raises(InvalidCredentials) as unknown:
        await fast.auth.login("nobody-here", PASSWORD, CLIENT)
    assert (type(locked.value), locked.value.reason, locked.value.message) == (
        type(unknown.value),
        unknown.value.reason,
        unknown.value.message,
    )
    assert fast.hasher.verifications - before == 2  # a dummy hash each: the same work
    assert fast.db.history(user_id)[-1] == LoginOutcome.LOCKED_OUT  # the owner is told
    # A signed-in caller knows the account exists: re-authentication says it is locked.
    caller = Principal(user_id, uuid.uuid4(), "jti")
    with pytest.raises(AccountLocked):
        await fast.account.change_password(
            caller, PASSWORD, "a brand new passphrase", keep_other_sessions=True, client=CLIENT
        )


async def test_concurrent_correct_logins_never_lock_the_account(key_ring) -> None:
    fast = fast_services(key_ring, max_failed_logins=5, per_account=1000)
    user_id = await _user(fast)
    results = await asyncio.gather(
        *(fast.auth.login("ann", PASSWORD, CLIENT) for _ in range(30)), return_exceptions=True
    )
    kinds = Counter(type(r).__name__ for r in results)
    assert set(kinds) <= {"IssuedTokens", "Throttled"}, kinds
    assert kinds["IssuedTokens"] >= 5
    assert all(r.retry_after_seconds >= 1 for r in results if isinstance(r, Throttled))
    assert LoginOutcome.LOCKED_OUT not in fast.db.history(user_id)
    async with fast.db.reader() as uow:
        assert await uow.users.failed_logins(user_id) == 0
    await fast.auth.login("ann", PASSWORD, CLIENT)  # nothing is held afterwards


async def test_parallel_guesses_check_no_more_hashes_than_the_limit(key_ring) -> None:
    fast = fast_services(key_ring, max_failed_logins=5, per_account=1000)
    user_id = await _user(fast)
    results = await asyncio.gather(
        *(fast.auth.login("ann", f"guess number {i}", CLIENT) for i in range(30)), return_exceptions=True
    )
    assert fast.hasher.verifications == 5
    assert Counter(type(r).__name__ for r in results) == Counter({"InvalidCredentials": 5, "Throttled": 25})
    async with fast.db.reader() as uow:
        assert await uow.users.failed_logins(user_id) == 5
    with pytest.raises(InvalidCredentials):  # locked now, the right password included
        await fast.auth.login("ann", PASSWORD, CLIENT)
    assert fast.db.history(user_id)[-1] == LoginOutcome.LOCKED_OUT


async def test_a_reservation_left_by_a_dead_check_lapses(key_ring) -> None:
    fast = fast_services(key_ring, max_failed_logins=2, per_account=1000)
    user_id = await _user(fast)
    async with fast.db.transaction() as uow:  # two checks that never settle (a crashed process)
        for _ in range(2):
            await uow.users.reserve_attempt(
                user_id=user_id, limit=2, now=fast.clock.now(), hold=timedelta(seconds=60)
            )
    with pytest.raises(Throttled):
        await fast.auth.login("ann", PASSWORD, CLIENT)
    fast.clock.advance(timedelta(seconds=61))
    await fast.auth.login("ann", PASSWORD, CLIENT)


async def test_reauthentication_names_the_field_counts_and_records(fast: FastServices) -> None:
    user_id = await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    caller = Principal(user_id, issued.session_id, "jti")
    with pytest.raises(PasswordIncorrect) as wrong:
        await fast.account.change_password(
            caller, "not the password", "a brand new passphrase", keep_other_sessions=True, client=CLIENT
        )
    assert [v.field for v in wrong.value.violations] == ["current_password"]
    async with fast.db.reader() as uow:
        assert await uow.users.failed_logins(user_id) == 1
    assert fast.db.history(user_id)[-1] == LoginOutcome.BAD_CREDENTIALS
    await fast.account.change_password(
        caller, PASSWORD, "a brand new passphrase", keep_other_sessions=True, client=CLIENT
    )
    assert fast.db.state.tickets_deleted_for == [user_id]  # no MFA ticket outlives the old password
    await fast.auth.login("ann", "a brand new passphrase", CLIENT)


async def test_an_access_token_expires_just_past_the_skew(fast: FastServices) -> None:
    await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    fast.clock.advance(fast.policy.access_ttl + fast.policy.clock_skew - timedelta(seconds=2))
    await fast.tokens.validate(issued.access_token)
    fast.clock.advance(timedelta(seconds=3))
    with pytest.raises(TokenExpired):
        await fast.tokens.validate(issued.access_token)


async def test_a_token_from_the_future_is_refused_beyond_the_skew(fast: FastServices, key_ring) -> None:
    await _user(fast)
    # The same key ring and sessions, but a verifier whose clock is behind the issuer's.
    behind = fast_services(key_ring)
    behind.db.state = fast.db.state
    fast.clock.advance(fast.policy.clock_skew - timedelta(seconds=2))
    within = await fast.auth.login("ann", PASSWORD, CLIENT)
    assert (await behind.tokens.validate(within.access_token)).subject == within.user_id
    fast.clock.advance(timedelta(seconds=4))
    beyond = await fast.auth.login("ann", PASSWORD, CLIENT)
    with pytest.raises(TokenRejected):
        await behind.tokens.validate(beyond.access_token)


async def test_a_token_signed_with_our_key_but_typed_jwt_is_refused(fast: FastServices) -> None:
    user_id = await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    active = next(k for k in fast.db.state.keys.values() if k.state == "active")
    private = load_private_key(
        SecretBox(FAST_SECRET, "signing-keys"), active.kid, active.private_key_encrypted
    )
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert claims["sub"] == str(user_id)
    for typ in ("JWT", "at+JWT ", "rt+jwt"):
        forged = jwt.encode(claims, private, algorithm="RS256", headers={"kid": active.kid, "typ": typ})
        with pytest.raises(TokenRejected):
            await fast.tokens.validate(forged)
    resigned = jwt.encode(claims, private, algorithm="RS256", headers={"kid": active.kid, "typ": "at+jwt"})
    assert (await fast.tokens.validate(resigned)).subject == user_id  # the key itself is fine


async def test_refresh_rotates_and_reuse_ends_the_session(fast: FastServices) -> None:
    user_id = await _user(fast)
    first = await fast.auth.login("ann", PASSWORD, CLIENT)
    second = await fast.auth.refresh(first.refresh_token, CLIENT)
    assert second.refresh_token != first.refresh_token and second.session_id == first.session_id
    with pytest.raises(RefreshTokenReused):
        await fast.auth.refresh(first.refresh_token, CLIENT)
    with pytest.raises(SessionRevoked):
        await fast.auth.refresh(second.refresh_token, CLIENT)
    with pytest.raises(SessionRevoked):
        await fast.tokens.validate(second.access_token)
    assert fast.db.history(user_id)[-1] == LoginOutcome.REFRESH_REUSE


async def test_sessions_idle_out_and_end_at_their_absolute_lifetime(fast: FastServices) -> None:
    await _user(fast)
    idle = await fast.auth.login("ann", PASSWORD, CLIENT)
    busy = await fast.auth.login("ann", PASSWORD, CLIENT)
    token = busy.refresh_token
    for _ in range(4):  # used every 6 days: never idle for the 7 that end a session
        fast.clock.advance(timedelta(days=6))
        token = (await fast.auth.refresh(token, CLIENT)).refresh_token
    with pytest.raises(SessionExpired, match="idle"):
        await fast.auth.refresh(idle.refresh_token, CLIENT)
    fast.clock.advance(timedelta(days=6, seconds=1))  # 30 days and a second after login
    with pytest.raises(SessionExpired, match="maximum lifetime"):
        await fast.auth.refresh(token, CLIENT)
