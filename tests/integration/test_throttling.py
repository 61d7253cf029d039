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


async def test_consecutive_failures_lock_the_account_durably(database_url, private_redis_url):
    async with server_with(database_url, redis_url=private_redis_url, max_failed_logins=5) as (stub, running):
        login = new_login()
        registered = await stub.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
        outcomes = await _attempts(stub, login, "wrong guess here", 20)
        assert outcomes == Counter({"INVALID_CREDENTIALS": 5, "ACCOUNT_LOCKED": 15})
        await running.services.redis.client.flushall()
        assert await _attempts(stub, login, STRONG_PASSWORD, 1) == Counter({"ACCOUNT_LOCKED": 1})
        async with running.services.db.transaction() as uow:
            await uow.users.unlock(__import__("uuid").UUID(registered.user.id))
        assert await _attempts(stub, login, STRONG_PASSWORD, 1) == Counter({"OK": 1})


async def test_success_resets_the_consecutive_failure_count(database_url):
    async with server_with(database_url, max_failed_logins=3) as (stub, _):
        login = new_login()
        await stub.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
        # Six failures in all, never three in a row: the account stays open.
        for _ in range(3):
            assert await _attempts(stub, login, "wrong guess here", 2) == Counter({"INVALID_CREDENTIALS": 2})
            assert await _attempts(stub, login, STRONG_PASSWORD, 1) == Counter({"OK": 1})
