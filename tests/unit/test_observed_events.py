"""What the services report to the metrics (the Observer): each password check with its
outcome and whether it re-authenticated a signed-in caller, a lockout once when it
happens, which throttle limit refused an attempt, each refresh rotated or reused, and
each bcrypt computation by kind. Operators alert on these counts."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from identity.domain.errors import InvalidCredentials, PasswordIncorrect, RefreshTokenReused, Throttled
from identity.domain.models import ClientInfo, LoginOutcome, Principal
from identity.domain.observer import RefreshOutcome, ThrottleScope
from identity.security.passwords import PasswordHasher
from identity.services.auth import AuthService
from identity.store.keys import StoredKey
from tests.fakes import FastServices, RecordingObserver, fast_services

CLIENT = ClientInfo(ip="192.0.2.7", user_agent="fast-tier/1")
PASSWORD = "correct horse battery staple"


def _observed(key_ring: dict[str, StoredKey], **options: int) -> tuple[FastServices, RecordingObserver]:
    observer = RecordingObserver()
    return fast_services(key_ring, observer=observer, **options), observer


async def _user(fast: FastServices) -> uuid.UUID:
    return (await fast.auth.register("ann", PASSWORD, "")).id


async def test_each_password_check_reports_its_outcome_and_whether_it_reauthenticated(key_ring) -> None:
    fast, observer = _observed(key_ring)
    user_id = await _user(fast)
    issued = await fast.auth.login("ann", PASSWORD, CLIENT)
    with pytest.raises(InvalidCredentials):
        await fast.auth.login("ann", "not the password", CLIENT)
    caller = Principal(user_id, issued.session_id, "jti")
    with pytest.raises(PasswordIncorrect):
        await fast.credentials.by_user(caller, "not the password", "current_password", CLIENT)
    await fast.credentials.by_user(caller, PASSWORD, "current_password", CLIENT)
    assert observer.password_checks == [
        (LoginOutcome.SUCCESS, False),
        (LoginOutcome.BAD_CREDENTIALS, False),
        (LoginOutcome.BAD_CREDENTIALS, True),
        (LoginOutcome.SUCCESS, True),
    ]


async def test_a_lockout_is_counted_once_by_the_failure_that_causes_it(key_ring) -> None:
    fast, observer = _observed(key_ring, max_failed_logins=2)
    await _user(fast)
    with pytest.raises(InvalidCredentials):
        await fast.auth.login("ann", "first wrong guess", CLIENT)
    assert observer.lockouts == 0
    with pytest.raises(InvalidCredentials):
        await fast.auth.login("ann", "second wrong guess", CLIENT)
    assert observer.lockouts == 1
    with pytest.raises(InvalidCredentials):  # locked: refused without a check, not counted again
        await fast.auth.login("ann", PASSWORD, CLIENT)
    assert observer.lockouts == 1


async def test_a_throttled_attempt_reports_which_limit_refused_it(key_ring) -> None:
    fast, observer = _observed(key_ring, per_account=1, per_ip=2)
    await _user(fast)
    await fast.auth.login("ann", PASSWORD, CLIENT)
    with pytest.raises(Throttled):
        await fast.auth.login("ann", PASSWORD, CLIENT)
    assert observer.throttles == [ThrottleScope.ACCOUNT]
    with pytest.raises(InvalidCredentials):
        await fast.auth.login("bob", PASSWORD, CLIENT)  # the address's second attempt
    with pytest.raises(Throttled):
        await fast.auth.login("cat", PASSWORD, CLIENT)
    assert observer.throttles == [ThrottleScope.ACCOUNT, ThrottleScope.ADDRESS]


async def test_each_refresh_reports_a_rotation_or_a_reuse(key_ring) -> None:
    fast, observer = _observed(key_ring)
    await _user(fast)
    auth = AuthService(
        fast.db,  # type: ignore[arg-type]
        fast.hasher,
        fast.tokens,
        fast.credentials,
        fast.clock,
        refresh_reuse_grace=timedelta(seconds=10),
        observer=observer,
    )
    issued = await auth.login("ann", PASSWORD, CLIENT)
    await auth.refresh(issued.refresh_token, CLIENT)  # the common case, in one call
    retried = await auth.refresh(issued.refresh_token, CLIENT)  # a retry within the grace window
    assert observer.refreshes == [RefreshOutcome.ROTATED, RefreshOutcome.ROTATED]
    fast.clock.advance(timedelta(seconds=11))
    with pytest.raises(RefreshTokenReused):
        await auth.refresh(issued.refresh_token, CLIENT)
    assert observer.refreshes[2:] == [RefreshOutcome.REUSE_DETECTED]
    assert retried.session_id == issued.session_id


async def test_bcrypt_work_is_reported_as_hash_or_verify() -> None:
    observer = RecordingObserver()
    hasher = PasswordHasher(rounds=4, concurrency=1, observer=observer)
    try:
        stored = await hasher.hash(PASSWORD)
        assert observer.bcrypt_operations == ["hash"]
        assert await hasher.verify(PASSWORD, stored)
        assert not await hasher.verify(PASSWORD, None)  # the dummy hash is bcrypt work too
        assert observer.bcrypt_operations == ["hash", "verify", "verify"]
    finally:
        hasher.close()
