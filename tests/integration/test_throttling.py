"""Login throttling: per account and per client address, counted before the hash
is checked so parallel guesses cannot exceed a limit; a durable lockout after
consecutive failures that Redis loss does not reset."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc

from identity.v1 import auth_pb2
from tests.integration.harness import server_with
from tests.support import STRONG_PASSWORD, failure, new_login


async def _attempts(stub, login: str, password: str, count: int, metadata=()) -> Counter[str]:
    async def one() -> str:
        try:
            await stub.Login(auth_pb2.LoginRequest(login=login, password=password), metadata=metadata)
            return "OK"
        except grpc.aio.AioRpcError as error:
            return failure(error).reason

    return Counter(await asyncio.gather(*(one() for _ in range(count))))


async def test_parallel_guesses_cannot_exceed_the_per_account_limit(database_url):
    async with server_with(database_url, login_attempts_per_account=3) as (stub, _):
        login = new_login()
        await stub.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
        outcomes = await _attempts(stub, login, "wrong guess here", 12)
        assert outcomes == Counter({"INVALID_CREDENTIALS": 3, "RATE_LIMITED": 9})
        # Even the right password waits for the window: the limit is not an oracle.
        with_right = await _attempts(stub, login, STRONG_PASSWORD, 1)
        assert with_right == Counter({"RATE_LIMITED": 1})


async def test_throttled_answer_carries_retry_info(database_url):
    async with server_with(database_url, login_attempts_per_account=1) as (stub, _):
        login = new_login()
        await _attempts(stub, login, "wrong guess here", 1)
        try:
            await stub.Login(auth_pb2.LoginRequest(login=login, password="wrong guess here"))
            raise AssertionError("not throttled")
        except grpc.aio.AioRpcError as error:
            got = failure(error)
    assert got.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert got.retry_seconds is not None and 0 < got.retry_seconds <= 60


async def test_per_address_limit_spans_accounts_and_ignores_spoofed_headers(database_url):
    async with server_with(database_url, login_attempts_per_ip=4) as (stub, _):
        outcomes: Counter[str] = Counter()
        for i in range(8):
            spoof = (("x-forwarded-for", f"198.51.100.{i}"),)
            outcomes += await _attempts(stub, new_login(), "wrong guess here", 1, metadata=spoof)
        assert outcomes == Counter({"INVALID_CREDENTIALS": 4, "RATE_LIMITED": 4})


async def _history(running, user_id: str) -> Counter[str]:
    async with running.services.db.reader() as uow:
        cur = await uow.conn.execute("SELECT outcome FROM login_history WHERE user_id = %s", (user_id,))
        return Counter(row["outcome"] for row in await cur.fetchall())


async def _forget_windows(running) -> None:
    """Drops this server's rate-limit windows (its own key prefix only: Redis is shared)."""
    client = running.services.redis.client
    async for key in client.scan_iter(match=running.services.redis.prefix + "*"):
        await client.delete(key)


async def test_consecutive_failures_lock_the_account_durably(database_url, private_redis_url):
    async with server_with(database_url, redis_url=private_redis_url, max_failed_logins=5) as (stub, running):
        login = new_login()
        registered = await stub.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
        outcomes = await _attempts(stub, login, "wrong guess here", 20)
        # Parallel guesses: five hashes are checked; the others find every slot in flight
        # (RATE_LIMITED, retryable) or the account locked, which answers like an unknown login.
        assert set(outcomes) <= {"INVALID_CREDENTIALS", "RATE_LIMITED"}, outcomes
        assert outcomes["INVALID_CREDENTIALS"] >= 5
        assert await _history(running, registered.user.id) == Counter(
            {"BAD_CREDENTIALS": 5}
            | (
                {"LOCKED_OUT": outcomes["INVALID_CREDENTIALS"] - 5}
                if outcomes["INVALID_CREDENTIALS"] > 5
                else {}
            )
            | ({"THROTTLED": outcomes["RATE_LIMITED"]} if outcomes["RATE_LIMITED"] else {})
        )
        await _forget_windows(running)  # the lock is on the user row, not in Redis
        assert await _attempts(stub, login, STRONG_PASSWORD, 1) == Counter({"INVALID_CREDENTIALS": 1})
        async with running.services.db.transaction() as uow:
            await uow.users.unlock(__import__("uuid").UUID(registered.user.id))
        assert await _attempts(stub, login, STRONG_PASSWORD, 1) == Counter({"OK": 1})


async def test_a_locked_login_and_an_unknown_one_answer_alike(database_url):
    async with server_with(database_url, max_failed_logins=2) as (stub, running):
        login = new_login()
        registered = await stub.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
        for _ in range(2):
            await _attempts(stub, login, "wrong guess here", 1)
        answers = []
        for name in (login, new_login()):
            try:
                await stub.Login(auth_pb2.LoginRequest(login=name, password=STRONG_PASSWORD))
                raise AssertionError("logged in")
            except grpc.aio.AioRpcError as error:
                got = failure(error)
                answers.append((got.code, got.message, got.reason, got.fields, got.retry_seconds))
        assert answers[0] == answers[1]
        assert answers[0][2] == "INVALID_CREDENTIALS"
        assert (await _history(running, registered.user.id))["LOCKED_OUT"] == 1


async def test_concurrent_correct_logins_never_lock_the_account(database_url):
    async with server_with(database_url, max_failed_logins=5) as (stub, running):
        login = new_login()
        registered = await stub.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
        outcomes = await _attempts(stub, login, STRONG_PASSWORD, 30)
        assert set(outcomes) <= {"OK", "RATE_LIMITED"}, outcomes
        assert outcomes["OK"] >= 5
        history = await _history(running, registered.user.id)
        assert history["LOCKED_OUT"] == 0 and history["BAD_CREDENTIALS"] == 0
        async with running.services.db.reader() as uow:
            assert await uow.users.failed_logins(__import__("uuid").UUID(registered.user.id)) == 0
        assert await _attempts(stub, login, STRONG_PASSWORD, 1) == Counter({"OK": 1})


async def test_success_resets_the_consecutive_failure_count(database_url):
    async with server_with(database_url, max_failed_logins=3) as (stub, _):
        login = new_login()
        await stub.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
        # Six failures in all, never three in a row: the account stays open.
        for _ in range(3):
            assert await _attempts(stub, login, "wrong guess here", 2) == Counter({"INVALID_CREDENTIALS": 2})
            assert await _attempts(stub, login, STRONG_PASSWORD, 1) == Counter({"OK": 1})
