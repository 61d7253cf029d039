"""ListLoginHistory over real gRPC and PostgreSQL: own entries only, newest first,
keyset pages behind tamper-proof tokens, an optional time range, trusted client IPs."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2

from identity.v1 import auth_pb2
from tests.conftest import Account, register_and_login
from tests.integration.harness import server_with
from tests.support import failure


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


async def _history(auth, account: Account, **fields) -> auth_pb2.ListLoginHistoryResponse:
    return await auth.ListLoginHistory(auth_pb2.ListLoginHistoryRequest(**fields), metadata=account.metadata)


async def _all_pages(auth, account: Account, page_size: int, **fields) -> list[auth_pb2.LoginHistoryEntry]:
    entries: list[auth_pb2.LoginHistoryEntry] = []
    token = ""
    while True:
        page = await _history(auth, account, page_size=page_size, page_token=token, **fields)
        assert len(page.entries) <= page_size
        entries.extend(page.entries)
        token = page.next_page_token
        if not token:
            return entries


async def _invalid(call) -> tuple[str, tuple[str, ...]]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    got = failure(err.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT, got
    return got.reason, got.fields


async def _backdate(services, user_id: str, entries: list[tuple[datetime, str]]) -> None:
    async with services.db.transaction() as uow:
        for at, outcome in entries:
            await uow.conn.execute(
                "INSERT INTO login_history (login_at, user_id, outcome, ip, user_agent) "
                "VALUES (%s, %s, %s, '192.0.2.1', 'old browser')",
                (at, user_id, outcome),
            )


async def test_history_lists_own_attempts_newest_first(auth, account):
    bad = auth.Login(auth_pb2.LoginRequest(login=account.login, password="definitely wrong"))
    with pytest.raises(grpc.aio.AioRpcError):
        await bad
    second = await auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    page = await _history(auth, account)
    assert [e.outcome for e in page.entries] == [
        auth_pb2.LOGIN_OUTCOME_SUCCESS,
        auth_pb2.LOGIN_OUTCOME_BAD_CREDENTIALS,
        auth_pb2.LOGIN_OUTCOME_SUCCESS,
    ]
    assert [e.session_id for e in page.entries] == [second.session_id, "", account.session_id]
    assert all(e.ip == "127.0.0.1" and "grpc" in e.user_agent for e in page.entries)
    times = [e.login_time.ToDatetime() for e in page.entries]
    assert times == sorted(times, reverse=True)
    assert page.next_page_token == ""


async def test_history_never_shows_another_users_entries(auth, account):
    stranger = await register_and_login(auth)
    for _ in range(3):
        await auth.Login(auth_pb2.LoginRequest(login=stranger.login, password=stranger.password))
    mine = await _history(auth, account, page_size=100)
    assert {e.session_id for e in mine.entries} == {account.session_id}


async def test_history_pages_to_the_end_without_gaps_or_repeats(auth, account, services):
    base = datetime.now(UTC) - timedelta(days=3)
    # Equal timestamps too: the id breaks ties, so no entry is skipped or shown twice.
    await _backdate(
        services, account.user_id, [(base + timedelta(minutes=i // 3), "SUCCESS") for i in range(44)]
    )
    entries = await _all_pages(auth, account, page_size=7)
    assert len(entries) == 45
    keys = [(e.login_time.ToDatetime(), e.outcome, e.session_id) for e in entries]
    assert [k[0] for k in keys] == sorted((k[0] for k in keys), reverse=True)


async def test_page_size_defaults_to_20_and_caps_at_100(auth, account, services):
    base = datetime.now(UTC) - timedelta(days=1)
    await _backdate(services, account.user_id, [(base + timedelta(seconds=i), "SUCCESS") for i in range(129)])
    assert len((await _history(auth, account)).entries) == 20
    assert len((await _history(auth, account, page_size=1000)).entries) == 100
    assert await _invalid(_history(auth, account, page_size=-5)) == ("INVALID_FIELD", ("page_size",))


async def test_tampered_or_foreign_page_tokens_are_invalid(auth, account, services):
    base = datetime.now(UTC) - timedelta(days=1)
    await _backdate(services, account.user_id, [(base + timedelta(seconds=i), "SUCCESS") for i in range(5)])
    token = (await _history(auth, account, page_size=2)).next_page_token
    assert token
    body, _, mac = token.partition(".")
    stranger = await register_and_login(auth)
    for bad in [token + "x", body + "." + mac[::-1], "garbage", "a.b", "." * 2000, body[::-1] + "." + mac]:
        assert await _invalid(_history(auth, account, page_token=bad)) == (
            "PAGE_TOKEN_INVALID",
            ("page_token",),
        )
    # Another user presenting my token sees nothing of mine: it is refused outright.
    assert await _invalid(_history(auth, stranger, page_token=token)) == (
        "PAGE_TOKEN_INVALID",
        ("page_token",),
    )
    # A session listing's token is not a history token.
    sessions_token = (
        await auth.ListSessions(auth_pb2.ListSessionsRequest(page_size=1), metadata=account.metadata)
    ).next_page_token
    if sessions_token:
        assert (await _invalid(_history(auth, account, page_token=sessions_token)))[0] == "PAGE_TOKEN_INVALID"


async def test_time_range_selects_entries_and_binds_the_page_token(auth, account, services):
    now = datetime.now(UTC)
    days = [now - timedelta(days=d) for d in (40, 30, 20, 10)]
    await _backdate(services, account.user_id, [(d, "BAD_CREDENTIALS") for d in days])
    start, end = _ts(now - timedelta(days=35)), _ts(now - timedelta(days=15))
    entries = await _all_pages(auth, account, page_size=1, start_time=start, end_time=end)
    assert [e.login_time.ToDatetime(tzinfo=UTC) for e in entries] == [days[2], days[1]]
    only_start = await _history(auth, account, page_size=100, start_time=_ts(now - timedelta(days=25)))
    assert len(only_start.entries) == 3  # today's login, day 10, day 20
    page = await _history(auth, account, page_size=1, start_time=start, end_time=end)
    assert await _invalid(_history(auth, account, page_token=page.next_page_token)) == (
        "PAGE_TOKEN_INVALID",
        ("page_token",),
    )


async def test_bad_time_ranges_are_invalid_argument(auth, account):
    now = datetime.now(UTC)
    _, fields = await _invalid(_history(auth, account, start_time=_ts(now), end_time=_ts(now)))
    assert fields == ("end_time",)
    out_of_range = timestamp_pb2.Timestamp(seconds=10**12)
    assert (await _invalid(_history(auth, account, start_time=out_of_range)))[1] == ("start_time",)
    bad_nanos = timestamp_pb2.Timestamp(seconds=0, nanos=-1)
    assert (await _invalid(_history(auth, account, end_time=bad_nanos)))[1] == ("end_time",)


async def test_history_needs_a_live_session(auth, account):
    await auth.Logout(auth_pb2.LogoutRequest(), metadata=account.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _history(auth, account)
    assert failure(err.value).reason == "SESSION_REVOKED"


async def test_direct_client_cannot_choose_its_ip_without_a_trusted_proxy(auth):
    spoof = (("x-forwarded-for", "203.0.113.7"),)
    account = await register_and_login(auth)
    await auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password), metadata=spoof)
    newest = (await _history(auth, account)).entries[0]
    assert newest.ip == "127.0.0.1"


async def test_from_a_trusted_proxy_the_right_most_untrusted_address_is_the_client(database_url):
    # The test client connects from 127.0.0.1: here that is the proxy.
    proxies = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.1.0.0/16"))
    async with server_with(database_url, trusted_proxies=proxies) as (stub, _):
        account = await register_and_login(stub)
        # 10.1.2.3 is a second proxy in the chain: the client is the address before it.
        forwarded = (("x-forwarded-for", "203.0.113.7, 198.51.100.9, 10.1.2.3"),)
        await stub.Login(
            auth_pb2.LoginRequest(login=account.login, password=account.password), metadata=forwarded
        )
        # A garbage header falls back to the last address known good (the peer) rather than storing it.
        garbage = (("x-forwarded-for", "not-an-ip"),)
        await stub.Login(
            auth_pb2.LoginRequest(login=account.login, password=account.password), metadata=garbage
        )
        page = await stub.ListLoginHistory(auth_pb2.ListLoginHistoryRequest(), metadata=account.metadata)
        assert [e.ip for e in page.entries[:2]] == ["127.0.0.1", "198.51.100.9"]


async def test_a_peer_outside_the_proxy_list_cannot_choose_its_ip(database_url):
    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    async with server_with(database_url, trusted_proxies=proxies) as (stub, _):
        account = await register_and_login(stub)
        spoof = (("x-forwarded-for", "203.0.113.9"),)
        login = auth_pb2.LoginRequest(login=account.login, password=account.password)
        await stub.Login(login, metadata=spoof)
        page = await stub.ListLoginHistory(auth_pb2.ListLoginHistoryRequest(), metadata=account.metadata)
        assert page.entries[0].ip == "127.0.0.1"
