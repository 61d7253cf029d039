"""Faults, with real processes: `identity serve`, and a PostgreSQL and a Redis of the
suite's own that the tests stop, hang (SIGSTOP) and restart. For each fault: the status
of every call, how long a call takes to fail and the service to recover (bounds with a
wide margin: these are guarantees, not benchmarks), and that nothing was granted or lost."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from identity.api.drain import QUIET_SECONDS as QUIET
from identity.v1 import auth_pb2, auth_pb2_grpc, rbac_pb2, rbac_pb2_grpc
from tests.e2e.conftest import ServerProcess, health_status, start_server_process, wait_for
from tests.faults.conftest import PrivatePostgres, PrivateRedis
from tests.support import STRONG_PASSWORD, bearer, failure, new_login

pytestmark = pytest.mark.e2e

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH_INTERVAL = 2.0  # server.HEALTH_INTERVAL_SECONDS
# IDENTITY_DB_STATEMENT_TIMEOUT_SECONDS: a little above the default (3), so that a machine
# loaded by other suites does not fail a healthy call.
STATEMENT_TIMEOUT = 4.0
MARGIN = 3.0  # a loaded 2-core machine
START = 60.0  # starting a Python process there can take long


def assert_json_log(server: ServerProcess) -> None:
    """Every line the server wrote is one JSON object (library lines included)."""
    lines = server.log_lines()
    raw = [line["raw"] for line in lines if "raw" in line]
    assert raw == [], raw[:5]
    text = server.log_path.read_text()
    for leak in ("Traceback", "SELECT ", "INSERT ", "UPDATE "):
        assert leak not in text


class Client:
    def __init__(self, server: ServerProcess) -> None:
        self.channel = grpc.aio.insecure_channel(server.address)
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        self.rbac = rbac_pb2_grpc.RbacServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def register(self) -> str:
        login = new_login("fault")
        await self.auth.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD), timeout=10)
        return login

    async def login(self, login: str, deadline: float = 15) -> str:
        """The outcome of one login: "OK" or the error's reason (or status code name)."""
        try:
            await self.auth.Login(
                auth_pb2.LoginRequest(login=login, password=STRONG_PASSWORD), timeout=deadline
            )
            return "OK"
        except grpc.aio.AioRpcError as error:
            got = failure(error)
            return f"{got.code.name}:{got.reason}" if got.reason else got.code.name


async def timed(coro) -> tuple[object, float]:
    started = time.monotonic()
    result = await coro
    return result, time.monotonic() - started


async def assert_fail_fast(client: Client, server: ServerProcess, login: str) -> None:
    """While the database is known down, calls fail UNAVAILABLE well under a second: no
    call waits for a connection or a statement timeout. Judged by the server's own
    account of each call (its `ms`), since a client on a loaded machine also measures
    the scheduler; the client's view is bounded well below the statement timeout."""

    def refusals() -> list[float]:
        return [
            line["ms"] / 1000
            for line in server.log_lines()
            if line.get("event") == "rpc_done" and line.get("outcome") == "BACKEND_UNAVAILABLE"
        ]

    before = len(refusals())
    results = await asyncio.gather(*(timed(client.login(login)) for _ in range(20)))
    assert {outcome for outcome, _ in results} == {"UNAVAILABLE:BACKEND_UNAVAILABLE"}
    seen = sorted(took for _, took in results)
    # A call's log line is written as its answer leaves: give the last ones a moment.
    await asyncio.to_thread(wait_for, lambda: len(refusals()) >= before + 20, "the calls' log lines", 10)
    served = sorted(refusals()[before:])
    median = served[len(served) // 2]
    print(f"known down: 20 logins failed in {seen[0]:.3f} to {seen[-1]:.3f} s (server median {median:.3f} s)")
    assert median < 1.0, served  # idle machine: about 0.01 s; the bound allows for a loaded one
    assert seen[-1] < STATEMENT_TIMEOUT, seen


async def health(server: ServerProcess) -> int | None:
    return await asyncio.to_thread(health_status, server.port, "", 1.0)


async def wait_health(server: ServerProcess, wanted: int, within: float) -> float:
    """Seconds until health says `wanted` (fails after `within` seconds)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await health(server) == wanted:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"health did not turn {wanted} within {within} s")


# -- 1. SIGTERM drains ------------------------------------------------------------------------


async def test_sigterm_finishes_calls_in_flight_and_refuses_new_ones_retryably(database_url, tmp_path):
    server = start_server_process(
        database_url, tmp_path, start_timeout=START, IDENTITY_SHUTDOWN_GRACE_SECONDS="10"
    )
    client = Client(server)
    try:
        login = await client.register()
        tokens = await client.auth.Login(auth_pb2.LoginRequest(login=login, password=STRONG_PASSWORD))
        check = rbac_pb2.CheckPermissionRequest(
            subject=rbac_pb2.Subject(user_id=tokens.user_id), permission="catalog.films.read"
        )
        metadata = bearer(tokens.access_token)

        async def one() -> str:
            try:
                answer = await client.rbac.CheckPermission(check, metadata=metadata, timeout=20)
                assert not answer.allowed  # nothing is granted on the way down either
                return "OK"
            except grpc.aio.AioRpcError as error:
                return error.code().name

        first = [asyncio.create_task(one()) for _ in range(200)]
        await asyncio.sleep(0.05)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert await health(server) in (NOT_SERVING, None)  # at once
        first_outcomes = Counter(await asyncio.gather(*first))
        await asyncio.sleep(QUIET + 0.5)  # past the backlog: the process now refuses new calls
        later_outcomes = Counter(await asyncio.gather(*(one() for _ in range(50))))
        exit_code = await asyncio.to_thread(server.process.wait, 20)
        took = time.monotonic() - signalled
        print(f"sigterm: {first_outcomes}, later {later_outcomes}, exit {exit_code} after {took:.2f} s")
    finally:
        await client.close()
        server.stop()
    # Calls sent before SIGTERM were taken and finish; none is cancelled.
    assert first_outcomes == Counter({"OK": 200}), first_outcomes
    # Calls after it are refused, retryably.
    assert set(later_outcomes) <= {"UNAVAILABLE"}, later_outcomes
    assert exit_code == 0
    assert took < 10 + MARGIN
    assert_json_log(server)
    refused = [line for line in server.log_lines() if line.get("outcome") == "SHUTTING_DOWN"]
    assert len(refused) <= 50


# -- 2. Redis restarts ------------------------------------------------------------------------


async def test_a_redis_restart_fails_calls_while_down_and_none_once_serving(
    database_url, tmp_path, private_redis: PrivateRedis
):
    server = start_server_process(
        database_url, tmp_path, start_timeout=START, IDENTITY_REDIS_URL=private_redis.url
    )
    client = Client(server)
    try:
        login = await client.register()
        # A burst fills the Redis pool with connections that the restart will kill.
        assert Counter(await asyncio.gather(*(client.login(login) for _ in range(30)))) == Counter({"OK": 30})
        private_redis.stop()
        outcome, took = await timed(client.login(login))
        print(f"redis down: a login failed in {took:.2f} s")
        assert outcome == "UNAVAILABLE:BACKEND_UNAVAILABLE"
        assert took < 2 * 2.0 + MARGIN  # socket timeouts of 2 s, one retry
        await wait_health(server, NOT_SERVING, HEALTH_INTERVAL + MARGIN + 2)
        private_redis.start()
        back = await wait_health(server, SERVING, 2 * HEALTH_INTERVAL + MARGIN)
        print(f"redis back: SERVING after {back:.2f} s")
        assert back < 2 * HEALTH_INTERVAL + MARGIN
        # Once SERVING, no call fails for Redis: dead pooled connections are retried on fresh ones.
        for _ in range(3):
            outcomes = Counter(await asyncio.gather(*(client.login(login) for _ in range(30))))
            assert outcomes == Counter({"OK": 30}), outcomes
            await asyncio.sleep(0.5)
    finally:
        await client.close()
        server.stop()
    assert_json_log(server)


# -- 3 and 4. PostgreSQL hangs, or goes away --------------------------------------------------


async def _registered(postgres: PrivatePostgres, tmp_path: Path) -> tuple[ServerProcess, Client, str]:
    server = start_server_process(
        postgres.url("identity"),
        tmp_path,
        start_timeout=START,
        IDENTITY_DB_STATEMENT_TIMEOUT_SECONDS=str(int(STATEMENT_TIMEOUT)),
    )
    client = Client(server)
    login = await client.register()
    assert await client.login(login) == "OK"
    return server, client, login


def _sessions(postgres: PrivatePostgres, login: str) -> int:
    with psycopg.connect(postgres.url("identity"), connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.login = %s", (login,)
        ).fetchone()
    return int(row[0]) if row else 0


async def test_a_hung_postgres_fails_calls_in_bounded_time_and_recovers(postgres, tmp_path):
    server, client, login = await _registered(postgres, tmp_path)
    try:
        postgres.hang()
        hung_at = time.monotonic()
        # A call that meets the hung server fails within the statement timeout.
        outcome, took = await timed(client.login(login))
        print(f"postgres hung: the first login failed in {took:.2f} s")
        assert outcome == "UNAVAILABLE:BACKEND_UNAVAILABLE"
        assert took < STATEMENT_TIMEOUT + MARGIN
        await wait_health(server, NOT_SERVING, 2 * HEALTH_INTERVAL + MARGIN)
        print(f"postgres hung: NOT_SERVING {time.monotonic() - hung_at:.2f} s after SIGSTOP")
        assert time.monotonic() - hung_at < 2 * HEALTH_INTERVAL + STATEMENT_TIMEOUT + MARGIN
        # Known down: every call fails fast.
        await assert_fail_fast(client, server, login)
        postgres.resume()
        back = await wait_health(server, SERVING, 10)
        print(f"postgres resumed: SERVING after {back:.2f} s")
        assert back < 5 + MARGIN
        outcomes = Counter(await asyncio.gather(*(client.login(login) for _ in range(20))))
        assert outcomes == Counter({"OK": 20}), outcomes
    finally:
        postgres.resume()
        await client.close()
        server.stop()
    # Nothing granted while down, nothing lost: one session per successful login.
    assert _sessions(postgres, login) == 1 + 20
    assert_json_log(server)


async def test_a_stopped_postgres_fails_calls_fast_and_recovers_without_a_restart(postgres, tmp_path):
    server, client, login = await _registered(postgres, tmp_path)
    try:
        postgres.stop()
        stopped_at = time.monotonic()
        outcome, took = await timed(client.login(login))
        print(f"postgres stopped: the first login failed in {took:.2f} s")
        assert outcome == "UNAVAILABLE:BACKEND_UNAVAILABLE"
        assert took < 1.0 + MARGIN
        await wait_health(server, NOT_SERVING, HEALTH_INTERVAL + MARGIN)
        print(f"postgres stopped: NOT_SERVING {time.monotonic() - stopped_at:.2f} s after")
        assert time.monotonic() - stopped_at < HEALTH_INTERVAL + MARGIN
        await assert_fail_fast(client, server, login)
        postgres.start()
        back = await wait_health(server, SERVING, 10)
        print(f"postgres restarted: SERVING after {back:.2f} s")
        assert back < 5 + MARGIN
        outcomes = Counter(await asyncio.gather(*(client.login(login) for _ in range(20))))
        assert outcomes == Counter({"OK": 20}), outcomes
    finally:
        await client.close()
        server.stop()
    assert _sessions(postgres, login) == 1 + 20
    assert_json_log(server)


# -- 5. Concurrent correct logins -------------------------------------------------------------


async def test_simultaneous_correct_logins_never_lock_the_account(postgres, tmp_path):
    server = start_server_process(
        postgres.url("identity"), tmp_path, start_timeout=START, IDENTITY_MAX_FAILED_LOGINS="5"
    )
    client = Client(server)
    try:
        login = await client.register()
        outcomes = Counter(await asyncio.gather(*(client.login(login) for _ in range(30))))
        assert set(outcomes) <= {"OK", "RESOURCE_EXHAUSTED:RATE_LIMITED"}, outcomes
        assert await client.login(login) == "OK"
    finally:
        await client.close()
        server.stop()
    with psycopg.connect(postgres.url("identity")) as conn:
        rows = conn.execute(
            """SELECT h.outcome, count(*) FROM login_history h JOIN users u ON u.id = h.user_id
               WHERE u.login = %s GROUP BY h.outcome""",
            (login,),
        ).fetchall()
    history = dict(rows)
    assert "LOCKED_OUT" not in history and "BAD_CREDENTIALS" not in history
    assert history["SUCCESS"] == outcomes["OK"] + 1
    assert_json_log(server)
