"""Ended sessions in each server process's memory: a live session's token is checked with
no PostgreSQL round trip; a session ended through any process (or the operator CLI) is
refused by every process on the very next call; without a lease, checks read PostgreSQL;
the feed resumes exactly from a cursor."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from identity.server import RunningServer
from identity.store.session_revocations import FeedingSessionRepository, SessionRevocationRepository
from identity.v1 import auth_pb2, auth_pb2_grpc, errors_pb2
from tests.conftest import register_and_login
from tests.integration.harness import server_with


class SessionReads:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = FeedingSessionRepository.get

        async def counting(repo: Any, session_id: Any) -> Any:
            self.count += 1
            return await original(repo, session_id)

        monkeypatch.setattr(FeedingSessionRepository, "get", counting)


async def _trusted(running: RunningServer) -> None:
    for _ in range(100):
        if running.services.ended_sessions.trusted():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no lease")


async def _validate(auth: auth_pb2_grpc.AuthServiceStub, token: str) -> auth_pb2.ValidateTokenResponse:
    return await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=token))


async def test_a_live_session_needs_no_postgresql_round_trip(auth, server, monkeypatch) -> None:
    await _trusted(server)
    account = await register_and_login(auth)
    reads = SessionReads(monkeypatch)
    assert (await _validate(auth, account.access_token)).valid
    first = reads.count
    assert first <= 1  # the first sight of a session reads its row once
    for _ in range(5):
        assert (await _validate(auth, account.access_token)).valid
        # An RPC that takes the token, too.
        await auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=account.metadata)
    assert reads.count == first


async def test_a_session_ended_through_any_process_is_refused_by_every_process_next(
    auth, server, services, database_url, monkeypatch
) -> None:
    async with server_with(database_url) as (other, other_server):
        await _trusted(server)
        await _trusted(other_server)
        for round_ in range(8):
            account = await register_and_login(auth)
            for stub in (auth, other):
                assert (await _validate(stub, account.access_token)).valid
            reads = SessionReads(monkeypatch)
            if round_ % 2:
                await auth.Logout(auth_pb2.LogoutRequest(), metadata=account.metadata)
            else:
                # The operator CLI: a process that holds no lease of its own.
                await services.sessions.revoke_for_login(account.login, None)
            for stub in (other, auth):
                answer = await _validate(stub, account.access_token)
                assert not answer.valid
                assert errors_pb2.ErrorReason.Name(answer.reason) == "ERROR_REASON_SESSION_REVOKED"
            # Refused from memory.
            assert reads.count == 0
            monkeypatch.undo()


async def test_without_a_lease_checks_read_the_session_row(database_url, monkeypatch) -> None:
    async with server_with(database_url) as (stub, running):
        await _trusted(running)
        account = await register_and_login(stub)
        await running.services.ended_sessions.stop()
        assert not running.services.ended_sessions.trusted()
        reads = SessionReads(monkeypatch)
        assert (await _validate(stub, account.access_token)).valid
        assert reads.count == 1
        await stub.Logout(auth_pb2.LogoutRequest(), metadata=account.metadata)
        assert not (await _validate(stub, account.access_token)).valid


async def test_a_burst_that_finds_the_lease_lapsed_shares_one_renewal(database_url, monkeypatch) -> None:
    """A renewal late under load must not turn every check into a PostgreSQL read (that
    flood is what makes PostgreSQL later still): the checks wait for one renewal and are
    answered from memory."""
    async with server_with(database_url) as (stub, running):
        ended = running.services.ended_sessions
        await _trusted(running)
        account = await register_and_login(stub)
        assert (await _validate(stub, account.access_token)).valid  # its facts are in memory
        renewals = 0
        original = SessionRevocationRepository.renew

        async def counting(repo: Any, *args: Any) -> Any:
            nonlocal renewals
            renewals += 1
            return await original(repo, *args)

        monkeypatch.setattr(SessionRevocationRepository, "renew", counting)
        reads = SessionReads(monkeypatch)
        ended.lease_until = 0.0  # as if the background renewal were late
        answers = await asyncio.gather(*(_validate(stub, account.access_token) for _ in range(60)))
        assert all(answer.valid for answer in answers)
        assert ended.trusted()
        assert reads.count == 0
        assert 1 <= renewals <= 3  # one shared renewal (the background loop may add its own)
        # Still exact: an end committed now is refused at once.
        await stub.Logout(auth_pb2.LogoutRequest(), metadata=account.metadata)
        assert not (await _validate(stub, account.access_token)).valid


async def test_the_feed_resumes_exactly_from_a_cursor(auth, server) -> None:
    ended = server.services.ended_sessions
    await _trusted(server)
    first = await register_and_login(auth)
    await auth.Logout(auth_pb2.LogoutRequest(), metadata=first.metadata)

    feed = ended.subscribe(0, heartbeat=0.1)
    batch = await anext(feed)
    assert first.session_id in {str(e.session_id) for e in batch.sessions}
    assert batch.current_at is not None
    cursor = batch.cursor
    await feed.aclose()

    second = await register_and_login(auth)
    await auth.Logout(auth_pb2.LogoutRequest(), metadata=second.metadata)
    resumed = ended.subscribe(cursor, heartbeat=0.1)
    batch = await anext(resumed)
    assert [str(e.session_id) for e in batch.sessions] == [second.session_id]
    assert all(e.seq > cursor for e in batch.sessions)
    await resumed.aclose()


async def test_every_ending_path_is_in_the_feed_with_its_reason(auth, server, services) -> None:
    """Whatever ends a session lands in the record (a trigger on the sessions table), with
    the reason and until when its tokens could verify."""
    ended = server.services.ended_sessions
    await _trusted(server)
    feed = ended.subscribe(ended.applied, heartbeat=0.1)
    await anext(feed)
    mfa_reset = await register_and_login(auth)
    await services.mfa.reset_for_login(mfa_reset.login)
    disabled = await register_and_login(auth)
    await services.user_admin.set_disabled(disabled.login, True)
    ours = {mfa_reset.session_id, disabled.session_id}
    reasons: dict[str, str] = {}
    while not ours <= reasons.keys():
        batch = await anext(feed)
        for entry in batch.sessions:
            reasons[str(entry.session_id)] = entry.reason
            assert entry.tokens_valid_until == entry.ended_at + server.services.settings.access_token_ttl + (
                server.services.settings.clock_skew
            )
    await feed.aclose()
    assert {s: reasons[s] for s in ours} == {
        mfa_reset.session_id: "mfa_reset",
        disabled.session_id: "account_disabled",
    }
    for account in (mfa_reset, disabled):
        assert not (await _validate(auth, account.access_token)).valid
