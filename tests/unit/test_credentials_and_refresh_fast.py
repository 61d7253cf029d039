"""The one credential check and the refresh rotation, at their edges, on the fast tier:
what is refused before any work, what each attempt counts and records, the lockout,
disabled accounts, and the grace window for a client retrying a lost refresh answer."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import jwt
import pytest

from identity.domain.errors import (
    AccountDisabled,
    AccountLocked,
    InvalidArgument,
    InvalidCredentials,
    PasswordIncorrect,
    Reason,
    RefreshTokenInvalid,
    RefreshTokenReused,
    SessionExpired,
    SessionRevoked,
    Throttled,
    TokenMissing,
    TokenRejected,
)
from identity.domain.models import ClientInfo, LoginOutcome, Principal
from identity.security.keyring import load_private_key
from identity.security.secretbox import SecretBox
from identity.services.auth import AuthService
from identity.services.credentials import BUSY_RETRY_AFTER_SECONDS, LOCKOUT_RETRY_AFTER_SECONDS
from tests.fakes import FAST_SECRET, FakeSessions, FastServices, FrozenClock, fast_services

CLIENT = ClientInfo(ip="192.0.2.7", user_agent="fast-tier/1")
PASSWORD = "correct horse battery staple"


async def _user(fast: FastServices, login: str = "ann") -> uuid.UUID:
    return (await fast.auth.register(login, PASSWORD, "")).id


async def _failed_logins(fast: FastServices, user_id: uuid.UUID) -> int | None:
    async with fast.db.reader() as uow:
        return await uow.users.failed_logins(user_id)


async def test_a_login_with_no_login_or_password_is_refused_before_any_work(fast: FastServices) -> None:
    await _user(fast)
    for login, password, field in [
        ("", PASSWORD, "login"),
        ("  ", PASSWORD, "login"),
        ("ann", "", "password"),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            await fast.auth.login(login, password, CLIENT)
        assert [v.field for v in refused.value.violations] == [field]
        assert "required" in refused.value.message
    with pytest.raises(InvalidArgument) as long:
        await fast.auth.login("ann", "p" * 1025, CLIENT)
    assert long.value.reason is Reason.PASSWORD_TOO_LONG
    assert [v.field for v in long.value.violations] == ["password"]
    with pytest.raises(InvalidCredentials):  # 1024 characters is still an answer, not an input error
        await fast.auth.login("ann", "p" * 1024, CLIENT)
    assert fast.hasher.verifications == 1


async def test_an_impossible_login_costs_a_hash_and_answers_like_a_wrong_password(fast: FastServices) -> None:
    await _user(fast)
    with pytest.raises(InvalidCredentials) as impossible:
        await fast.auth.login(
            "pаypal", PASSWORD, CLIENT
        )  # a Cyrillic letter among Latin ones: no account can have it
    assert fast.hasher.verifications == 1
    with pytest.raises(InvalidCredentials) as wrong:
        await fast.auth.login("ann", "not the password", CLIENT)
    assert (impossible.value.reason, impossible.value.message) == (wrong.value.reason, wrong.value.message)


async def test_every_failed_login_is_recorded_with_its_client_and_time(fast: FastServices) -> None:
    user_id = await _user(fast)
    fast.clock.advance(timedelta(hours=1))
    with pytest.raises(InvalidCredentials):
        await fast.auth.login("ann", "not the password", CLIENT)
    ((owner, event),) = fast.db.state.history
    assert owner == user_id
    assert (event.outcome, event.ip, event.user_agent, event.session_id) == (
        LoginOutcome.BAD_CREDENTIALS,
        CLIENT.ip,
        CLIENT.user_agent,
        None,
    )
    assert abs(event.login_at - fast.clock.now()) < timedelta(seconds=5)


async def test_a_throttled_login_is_recorded_against_the_account_it_named(key_ring) -> None:
    fast = fast_services(key_ring, per_account=1)
    user_id = await _user(fast)
    await fast.auth.login("ann", PASSWORD, CLIENT)
    with pytest.raises(Throttled):
        await fast.auth.login("ANN", PASSWORD, CLIENT)
    assert fast.db.history(user_id) == [LoginOutcome.SUCCESS, LoginOutcome.THROTTLED]
    with pytest.raises(InvalidCredentials):
        await fast.auth.login("nobody", "whatever it is", CLIENT)
    with pytest.raises(Throttled):
        await fast.auth.login("nobody", "whatever it is", CLIENT)
    assert fast.db.history(None) == [LoginOutcome.BAD_CREDENTIALS, LoginOutcome.THROTTLED]
    (_, throttled) = fast.db.state.history[1]
    assert (throttled.ip, throttled.user_agent) == (CLIENT.ip, CLIENT.user_agent)


async def test_a_locked_account_answers_like_an_unknown_login_and_is_recorded(key_ring) -> None:
    fast = fast_services(key_ring, max_failed_logins=1)
    user_id = await _user(fast)
    with pytest.raises(InvalidCredentials):
        await fast.auth.login("ann", "not the password", CLIENT)
    with pytest.raises(InvalidCredentials) as locked:  # the right password, but locked
        await fast.auth.login("ann", PASSWORD, CLIENT)
    with pytest.raises(InvalidCredentials) as unknown:
        await fast.auth.login("nobody-at-all", PASSWORD, CLIENT)
    assert (locked.value.reason, locked.value.message) == (unknown.value.reason, unknown.value.message)
    # The same work as for an unknown login: a dummy hash, never the account's own.
    assert fast.hasher.verifications == 3
    assert fast.db.history(user_id) == [LoginOutcome.BAD_CREDENTIALS, LoginOutcome.LOCKED_OUT]
    async with fast.db.transaction() as uow:
        await uow.users.unlock(user_id)
    await fast.auth.login("ann", PASSWORD, CLIENT)


async def test_a_disabled_account_is_refused_only_with_the_right_password(fast: FastServices) -> None:
    user_id = await _user(fast)
    async with fast.db.transaction() as uow:
        await uow.users.set_disabled(user_id, True)
    with pytest.raises(InvalidCredentials):
        await fast.auth.login("ann", "not the password", CLIENT)
    with pytest.raises(AccountDisabled):
        await fast.auth.login("ann", PASSWORD, CLIENT)
    assert fast.db.history(user_id) == [LoginOutcome.BAD_CREDENTIALS, LoginOutcome.ACCOUNT_DISABLED]
    # The right password of a disabled account neither resets the failure count nor adds to it.
    assert await _failed_logins(fast, user_id) == 1
    assert not [s for s in fast.db.state.sessions.values() if s.user_id == user_id]


async def test_a_reauthentication_is_throttled_per_caller_and_recorded_with_the_session(key_ring) -> None:
    fast = fast_services(key_ring, per_account=1)
    user_id = await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)  # counted on the login's own window
    caller = Principal(user_id, issued.session_id, "jti")
    with pytest.raises(PasswordIncorrect):
        await fast.credentials.by_user(caller, "not the password", "password", CLIENT)
    with pytest.raises(Throttled):
        await fast.credentials.by_user(caller, PASSWORD, "password", CLIENT)
    outcomes = fast.db.history(user_id)
    assert outcomes[-2:] == [LoginOutcome.BAD_CREDENTIALS, LoginOutcome.THROTTLED]
    assert [e.session_id for _, e in fast.db.state.history[-2:]] == [issued.session_id] * 2
    assert await _failed_logins(fast, user_id) == 1
    with pytest.raises(InvalidArgument) as empty:
        await fast.credentials.by_user(caller, "", "current_password", CLIENT)
    assert [v.field for v in empty.value.violations] == ["current_password"]


async def test_a_reauthentication_for_a_deleted_account_is_refused(fast: FastServices) -> None:
    gone = Principal(uuid.uuid4(), uuid.uuid4(), "jti")
    with pytest.raises(InvalidCredentials):
        await fast.credentials.by_user(gone, PASSWORD, "password", CLIENT)
    assert fast.hasher.verifications == 0


async def test_a_successful_reauthentication_resets_the_count(fast: FastServices) -> None:
    user_id = await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    caller = Principal(user_id, issued.session_id, "jti")
    with pytest.raises(PasswordIncorrect):
        await fast.credentials.by_user(caller, "not the password", "password", CLIENT)
    credentials = await fast.credentials.by_user(caller, PASSWORD, "password", CLIENT)
    assert credentials.user.id == user_id
    assert await _failed_logins(fast, user_id) == 0


async def _hold_every_slot(fast: FastServices, user_id: uuid.UUID, limit: int) -> None:
    """Reservations of checks still in flight (on another process, say)."""
    async with fast.db.transaction() as uow:
        for _ in range(limit):
            await uow.users.reserve_attempt(
                user_id=user_id, limit=limit, now=fast.clock.now(), hold=timedelta(seconds=60)
            )


async def test_a_login_while_every_slot_is_in_flight_is_throttled_and_recorded_for_its_account(
    key_ring,
) -> None:
    fast = fast_services(key_ring, max_failed_logins=1)
    user_id = await _user(fast)
    await _hold_every_slot(fast, user_id, 1)
    with pytest.raises(Throttled) as busy:
        await fast.auth.login("ann", PASSWORD, CLIENT)
    assert type(busy.value) is Throttled and busy.value.retry_after_seconds == BUSY_RETRY_AFTER_SECONDS
    assert fast.db.history(user_id) == [LoginOutcome.THROTTLED]
    assert fast.hasher.verifications == 0 and await _failed_logins(fast, user_id) == 0


async def test_a_reauthentication_while_every_slot_is_in_flight_is_throttled_not_locked(key_ring) -> None:
    fast = fast_services(key_ring, max_failed_logins=1)
    user_id = await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    caller = Principal(user_id, issued.session_id, "jti")
    await _hold_every_slot(fast, user_id, 1)
    with pytest.raises(Throttled) as busy:
        await fast.credentials.by_user(caller, PASSWORD, "password", CLIENT)
    assert type(busy.value) is Throttled  # not AccountLocked: no password was found wrong
    (owner, event) = fast.db.state.history[-1]
    assert (owner, event.outcome, event.session_id) == (user_id, LoginOutcome.THROTTLED, issued.session_id)


class _StalledHasher:
    """A hash check that never finishes until cancelled (a client that hung up mid-check)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def verify(self, password: str, password_hash: bytes | None) -> bool:
        self.started.set()
        await asyncio.Event().wait()
        return False


async def test_a_check_cancelled_mid_hash_frees_its_slot_at_once(key_ring) -> None:
    fast = fast_services(key_ring, max_failed_logins=1)
    user_id = await _user(fast)
    stalled = _StalledHasher()
    fast.credentials._hasher = stalled
    attempt = asyncio.create_task(fast.auth.login("ann", PASSWORD, CLIENT))
    await stalled.started.wait()
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    fast.credentials._hasher = fast.hasher
    # The only slot is free again now, not a minute later; nothing counted as a failure.
    assert (await fast.auth.login("ann", PASSWORD, CLIENT)).user_id == user_id
    assert await _failed_logins(fast, user_id) == 0


# -- refresh -------------------------------------------------------------------------


async def test_a_refresh_token_of_the_wrong_kind_or_size_is_invalid(fast: FastServices) -> None:
    await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    for token in ["", "mt_" + issued.refresh_token[3:], issued.refresh_token[3:], "rt_" + "a" * 126, "rt_x"]:
        with pytest.raises(RefreshTokenInvalid):
            await fast.auth.refresh(token, CLIENT)
    assert len(issued.refresh_token) < 128
    # Nothing above was taken for reuse: the session lives on.
    assert (await fast.auth.refresh(issued.refresh_token, CLIENT)).session_id == issued.session_id


async def test_a_refresh_answers_a_working_pair_and_marks_the_session_used(fast: FastServices) -> None:
    user_id = await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    fast.clock.advance(timedelta(hours=2))
    renewed = await fast.auth.refresh(issued.refresh_token, CLIENT)
    assert (renewed.user_id, renewed.session_id) == (user_id, issued.session_id)
    assert renewed.expires_in_seconds == 900
    assert renewed.refresh_token.startswith("rt_") and renewed.refresh_token != issued.refresh_token
    claims = await fast.tokens.validate(renewed.access_token)
    assert (claims.subject, claims.session_id) == (user_id, issued.session_id)
    session = fast.db.state.sessions[issued.session_id]
    # How and when the user signed in carry over: the refresh is not a new sign-in.
    assert (claims.amr, claims.auth_time) == (("pwd",), session.auth_time.replace(microsecond=0))
    assert abs(session.last_used_at - fast.clock.now()) < timedelta(seconds=5)
    # The new token works once more; the old one is spent.
    await fast.auth.refresh(renewed.refresh_token, CLIENT)


async def test_refresh_reuse_is_recorded_once_with_the_client(fast: FastServices) -> None:
    user_id = await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    await fast.auth.refresh(issued.refresh_token, CLIENT)
    thief = ClientInfo(ip="198.51.100.4", user_agent="thief")
    for _ in range(2):
        with pytest.raises(RefreshTokenReused):
            await fast.auth.refresh(issued.refresh_token, thief)
    reuse = [(o, e) for o, e in fast.db.state.history if e.outcome is LoginOutcome.REFRESH_REUSE]
    assert len(reuse) == 1
    owner, event = reuse[0]
    assert (owner, event.ip, event.user_agent, event.session_id) == (
        user_id,
        thief.ip,
        thief.user_agent,
        issued.session_id,
    )
    assert fast.db.state.sessions[issued.session_id].revoked_reason == "refresh_token_reuse"


def _with_grace(fast: FastServices, seconds: int) -> AuthService:
    return AuthService(
        fast.db,  # type: ignore[arg-type]
        fast.hasher,
        fast.tokens,
        fast.credentials,
        fast.clock,
        refresh_reuse_grace=timedelta(seconds=seconds),
    )


async def test_a_retry_within_the_grace_window_replaces_the_unused_successor(fast: FastServices) -> None:
    await _user(fast)
    auth = _with_grace(fast, 10)
    issued = await auth.login("ann", PASSWORD, CLIENT)
    lost = await auth.refresh(issued.refresh_token, CLIENT)
    fast.clock.advance(timedelta(seconds=9))
    retried = await auth.refresh(issued.refresh_token, CLIENT)
    assert retried.session_id == issued.session_id
    assert retried.refresh_token not in (lost.refresh_token, issued.refresh_token)
    # Never two live tokens: the answer that was lost is dead now, and using it is reuse.
    with pytest.raises(RefreshTokenReused):
        await auth.refresh(lost.refresh_token, CLIENT)
    with pytest.raises(SessionRevoked):
        await auth.refresh(retried.refresh_token, CLIENT)


async def test_a_retry_at_the_end_of_the_grace_window_still_counts(key_ring) -> None:
    fast = fast_services(key_ring, clock=FrozenClock())
    await _user(fast)
    auth = _with_grace(fast, 10)
    issued = await auth.login("ann", PASSWORD, CLIENT)
    await auth.refresh(issued.refresh_token, CLIENT)
    fast.clock.advance(timedelta(seconds=10))
    retried = await auth.refresh(issued.refresh_token, CLIENT)
    await auth.refresh(retried.refresh_token, CLIENT)


async def test_a_replay_after_the_grace_window_ends_the_session(fast: FastServices) -> None:
    await _user(fast)
    auth = _with_grace(fast, 10)
    issued = await auth.login("ann", PASSWORD, CLIENT)
    successor = await auth.refresh(issued.refresh_token, CLIENT)
    fast.clock.advance(timedelta(seconds=11))
    with pytest.raises(RefreshTokenReused):
        await auth.refresh(issued.refresh_token, CLIENT)
    with pytest.raises(SessionRevoked):
        await auth.refresh(successor.refresh_token, CLIENT)


async def test_a_replay_after_the_successor_was_used_ends_the_session_even_within_grace(
    fast: FastServices,
) -> None:
    await _user(fast)
    auth = _with_grace(fast, 10)
    issued = await auth.login("ann", PASSWORD, CLIENT)
    successor = await auth.refresh(issued.refresh_token, CLIENT)
    third = await auth.refresh(successor.refresh_token, CLIENT)
    with pytest.raises(RefreshTokenReused):
        await auth.refresh(issued.refresh_token, CLIENT)
    with pytest.raises(SessionRevoked):
        await auth.refresh(third.refresh_token, CLIENT)


async def test_without_a_grace_window_any_second_use_is_reuse(fast: FastServices) -> None:
    await _user(fast)
    auth = _with_grace(fast, 0)
    issued = await auth.login("ann", PASSWORD, CLIENT)
    await auth.refresh(issued.refresh_token, CLIENT)
    with pytest.raises(RefreshTokenReused):
        await auth.refresh(issued.refresh_token, CLIENT)


async def test_an_unknown_refresh_token_ends_nothing(fast: FastServices) -> None:
    await _user(fast)
    auth = _with_grace(fast, 10)
    issued = await auth.login("ann", PASSWORD, CLIENT)
    with pytest.raises(RefreshTokenInvalid):
        await auth.refresh("rt_" + "A" * 43, CLIENT)
    await auth.refresh(issued.refresh_token, CLIENT)


# -- bearer tokens ---------------------------------------------------------------------


async def test_a_call_without_a_bearer_token_is_unauthenticated(fast: FastServices) -> None:
    for token in (None, ""):
        with pytest.raises(TokenMissing):
            await fast.tokens.authenticate(token)


async def test_authenticate_names_the_user_session_and_token(fast: FastServices) -> None:
    user_id = await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    principal = await fast.tokens.authenticate(issued.access_token)
    claims = await fast.tokens.validate(issued.access_token)
    assert principal == Principal(user_id, issued.session_id, claims.token_id)
    await fast.auth.logout(principal)
    with pytest.raises(SessionRevoked):
        await fast.tokens.authenticate(issued.access_token)
    assert fast.db.state.sessions[issued.session_id].revoked_reason == "logout"


def _forge(fast: FastServices, claims: dict[str, object]) -> str:
    """A token signed with the service's own active key (what a bug in the checks would let through)."""
    active = next(k for k in fast.db.state.keys.values() if k.state == "active")
    private = load_private_key(
        SecretBox(FAST_SECRET, "signing-keys"), active.kid, active.private_key_encrypted
    )
    return jwt.encode(claims, private, algorithm="RS256", headers={"kid": active.kid, "typ": "at+jwt"})


async def test_a_token_naming_another_users_session_or_no_session_is_refused(fast: FastServices) -> None:
    await _user(fast)
    bob = await _user(fast, "bob")
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert (await fast.tokens.validate(_forge(fast, claims))).session_id == issued.session_id
    for change in [{"sub": str(bob)}, {"sid": str(uuid.uuid4())}]:
        with pytest.raises(TokenRejected):
            await fast.tokens.validate(_forge(fast, {**claims, **change}))


async def test_a_token_of_another_issuer_is_refused_even_under_our_key(fast: FastServices) -> None:
    await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    with pytest.raises(TokenRejected):
        await fast.tokens.validate(_forge(fast, {**claims, "iss": "someone-else"}))


async def test_a_session_ends_exactly_at_its_absolute_lifetime(key_ring) -> None:
    fast = fast_services(key_ring, clock=FrozenClock(), session_idle_ttl=timedelta(days=60))
    await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    fast.clock.advance(timedelta(days=30) - timedelta(microseconds=1))
    token = (await fast.auth.refresh(issued.refresh_token, CLIENT)).refresh_token
    fast.clock.advance(timedelta(microseconds=1))
    with pytest.raises(SessionExpired) as expired:
        await fast.auth.refresh(token, CLIENT)
    assert "maximum lifetime" in expired.value.message


async def test_a_session_ends_exactly_when_idle_for_its_idle_lifetime(key_ring) -> None:
    fast = fast_services(key_ring, clock=FrozenClock())
    await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    other = await fast.auth.login("ann", PASSWORD, CLIENT)
    fast.clock.advance(timedelta(days=7) - timedelta(microseconds=1))
    await fast.auth.refresh(other.refresh_token, CLIENT)
    fast.clock.advance(timedelta(microseconds=1))
    with pytest.raises(SessionExpired) as expired:
        await fast.auth.refresh(issued.refresh_token, CLIENT)
    assert "idle" in expired.value.message


async def test_a_refresh_reuse_is_recorded_at_the_time_it_happened(key_ring) -> None:
    fast = fast_services(key_ring, clock=FrozenClock())
    await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    await fast.auth.refresh(issued.refresh_token, CLIENT)
    fast.clock.advance(timedelta(hours=3))
    with pytest.raises(RefreshTokenReused):
        await fast.auth.refresh(issued.refresh_token, CLIENT)
    (event,) = [e for _, e in fast.db.state.history if e.outcome is LoginOutcome.REFRESH_REUSE]
    assert event.login_at == fast.clock.now()


async def test_without_a_grace_window_even_an_immediate_second_use_is_reuse(key_ring) -> None:
    fast = fast_services(key_ring, clock=FrozenClock())
    await _user(fast)
    auth = _with_grace(fast, 0)
    issued = await auth.login("ann", PASSWORD, CLIENT)
    await auth.refresh(issued.refresh_token, CLIENT)
    with pytest.raises(RefreshTokenReused):
        await auth.refresh(issued.refresh_token, CLIENT)


async def test_logins_from_one_address_are_throttled_across_accounts(key_ring) -> None:
    fast = fast_services(key_ring, per_ip=3)
    for login in ("ann", "bob", "cid", "dan"):
        await _user(fast, login)
    for login in ("ann", "bob", "cid"):
        await fast.auth.login(login, PASSWORD, CLIENT)
    with pytest.raises(Throttled):
        await fast.auth.login("dan", PASSWORD, CLIENT)
    await fast.auth.login("dan", PASSWORD, ClientInfo(ip="192.0.2.8", user_agent="other"))


async def test_reauthentications_are_throttled_per_user_and_per_address(key_ring) -> None:
    fast = fast_services(key_ring, per_account=2, per_ip=4)
    callers = []
    for login in ("ann", "bob", "cid"):
        user_id = await _user(fast, login)
        issued = await fast.auth.login(login, PASSWORD, ClientInfo(ip=None, user_agent="x"))
        callers.append(Principal(user_id, issued.session_id, "jti"))
    ann, bob, cid = callers
    for _ in range(2):
        await fast.credentials.by_user(ann, PASSWORD, "password", CLIENT)
    with pytest.raises(Throttled):
        await fast.credentials.by_user(ann, PASSWORD, "password", CLIENT)
    # Bob has a window of his own; the address has counted three attempts so far.
    await fast.credentials.by_user(bob, PASSWORD, "password", CLIENT)
    await fast.credentials.by_user(cid, PASSWORD, "password", CLIENT)
    with pytest.raises(Throttled):  # the address's fifth: Cid's own window had room
        await fast.credentials.by_user(cid, PASSWORD, "password", CLIENT)
    await fast.credentials.by_user(bob, PASSWORD, "password", ClientInfo(ip="192.0.2.99", user_agent="x"))


async def test_a_refused_reauthentication_is_recorded_with_the_calling_session(key_ring) -> None:
    fast = fast_services(key_ring, max_failed_logins=1)
    user_id = await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    caller = Principal(user_id, issued.session_id, "jti")
    with pytest.raises(PasswordIncorrect):
        await fast.credentials.by_user(caller, "not the password", "password", CLIENT)
    with pytest.raises(AccountLocked) as locked:
        await fast.credentials.by_user(caller, PASSWORD, "password", CLIENT)
    assert locked.value.retry_after_seconds == LOCKOUT_RETRY_AFTER_SECONDS  # sent as RetryInfo
    async with fast.db.transaction() as uow:
        await uow.users.unlock(user_id)
        await uow.users.set_disabled(user_id, True)
    with pytest.raises(AccountDisabled):
        await fast.credentials.by_user(caller, PASSWORD, "password", CLIENT)
    recorded = [(e.outcome, e.session_id) for owner, e in fast.db.state.history if owner == user_id]
    assert recorded[-3:] == [
        (LoginOutcome.BAD_CREDENTIALS, issued.session_id),
        (LoginOutcome.LOCKED_OUT, issued.session_id),
        (LoginOutcome.ACCOUNT_DISABLED, issued.session_id),
    ]


async def test_a_client_may_retry_a_lost_answer_more_than_once_within_the_grace_window(
    fast: FastServices,
) -> None:
    await _user(fast)
    auth = _with_grace(fast, 10)
    issued = await auth.login("ann", PASSWORD, CLIENT)
    await auth.refresh(issued.refresh_token, CLIENT)
    first_retry = await auth.refresh(issued.refresh_token, CLIENT)
    fast.clock.advance(timedelta(seconds=5))
    second_retry = await auth.refresh(issued.refresh_token, CLIENT)
    assert second_retry.session_id == issued.session_id
    with pytest.raises(RefreshTokenReused):  # the answer of the first retry was replaced
        await auth.refresh(first_retry.refresh_token, CLIENT)


async def test_a_retried_refresh_answers_a_token_of_the_same_user_session_and_sign_in(
    fast: FastServices,
) -> None:
    user_id = await _user(fast)
    auth = _with_grace(fast, 10)
    issued = await auth.login("ann", PASSWORD, CLIENT)
    signed_in = fast.db.state.sessions[issued.session_id].auth_time
    fast.clock.advance(timedelta(hours=1))
    await auth.refresh(issued.refresh_token, CLIENT)
    fast.clock.advance(timedelta(seconds=3))
    retried = await auth.refresh(issued.refresh_token, CLIENT)
    assert (retried.user_id, retried.session_id, retried.expires_in_seconds) == (
        user_id,
        issued.session_id,
        900,
    )
    claims = await fast.tokens.validate(retried.access_token)
    assert (claims.subject, claims.session_id, claims.amr) == (user_id, issued.session_id, ("pwd",))
    assert claims.auth_time == signed_in.replace(microsecond=0)  # when the user signed in, not now


async def test_a_live_token_is_rotated_in_one_call_without_a_transaction(fast: FastServices) -> None:
    await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    before = fast.db.transactions
    await fast.auth.refresh(issued.refresh_token, CLIENT)
    assert fast.db.transactions == before


async def test_the_general_path_rotates_a_live_token_when_the_one_call_rotation_declines(
    key_ring, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def decline(*_args: object, **_kwargs: object) -> None:
        return None

    fast = fast_services(key_ring, clock=FrozenClock())
    await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    monkeypatch.setattr(FakeSessions, "rotate_live_refresh_token", decline)
    fast.clock.advance(timedelta(minutes=5))
    renewed = await fast.auth.refresh(issued.refresh_token, CLIENT)
    assert renewed.session_id == issued.session_id
    assert fast.db.state.sessions[issued.session_id].last_used_at == fast.clock.now()
    with pytest.raises(RefreshTokenReused):  # the token it replaced is spent
        await fast.auth.refresh(issued.refresh_token, CLIENT)
