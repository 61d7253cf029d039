"""The metrics listener, scraped over HTTP after real calls and parsed with
prometheus_client.parser: each counter moves by exactly what the calls did."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from datetime import timedelta
from pathlib import Path

import grpc
import psycopg
import pytest

from identity.domain.clock import SteppedClock
from identity.store.migrate import upgrade
from identity.v1 import auth_pb2, rbac_pb2, rbac_pb2_grpc
from tests.integration.harness import server_with
from tests.mfa_support import code_at, enrol, outcome, ticket, verify, wrong_code
from tests.observability_support import Scrape, delta, scrape
from tests.rbac_support import by_user, give, new_permission, service_key
from tests.support import STRONG_PASSWORD, failure, fresh_database, new_login

AUTH = "identity.v1.AuthService"
RBAC = "identity.v1.RbacService"


async def scrape_of(running) -> Scrape:
    port = running.telemetry.metrics_port
    assert port is not None
    return await asyncio.to_thread(scrape, port)


async def test_metrics_are_off_unless_a_listener_is_configured(database_url) -> None:
    async with server_with(database_url) as (_, running):
        assert running.telemetry.metrics is None
        assert running.telemetry.metrics_port is None


async def test_logins_refreshes_and_rpcs_are_counted(database_url) -> None:
    async with server_with(database_url, metrics_listen="127.0.0.1:0") as (stub, running):
        login = new_login()
        await stub.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
        before = await scrape_of(running)

        first = await stub.Login(auth_pb2.LoginRequest(login=login, password=STRONG_PASSWORD))
        await stub.Login(auth_pb2.LoginRequest(login=login, password=STRONG_PASSWORD))
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await stub.Login(auth_pb2.LoginRequest(login=login, password="not the password at all"))
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
        rotated = await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token))
        assert rotated.refresh_token
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token))

        after = await scrape_of(running)
        logins = "identity_logins_total"
        assert delta(after, before, logins, kind="login", outcome="success") == 2
        assert delta(after, before, logins, kind="login", outcome="bad_credentials") == 1
        assert delta(after, before, logins, kind="reauthentication", outcome="success") == 0
        assert delta(after, before, "identity_refreshes_total", outcome="rotated") == 1
        assert delta(after, before, "identity_refreshes_total", outcome="reuse_detected") == 1

        handled = "grpc_server_handled_total"
        assert delta(after, before, handled, grpc_service=AUTH, grpc_method="Login", grpc_code="OK") == 2
        assert (
            delta(after, before, handled, grpc_service=AUTH, grpc_method="Login", grpc_code="UNAUTHENTICATED")
            == 1
        )
        assert delta(after, before, handled, grpc_service=AUTH, grpc_method="Refresh", grpc_code="OK") == 1
        count = "grpc_server_handling_seconds_count"
        assert delta(after, before, count, grpc_service=AUTH, grpc_method="Login") == 3
        inf = "grpc_server_handling_seconds_bucket"
        assert delta(after, before, inf, grpc_service=AUTH, grpc_method="Login", le="+Inf") == 3
        assert (
            delta(after, before, "grpc_server_handling_seconds_sum", grpc_service=AUTH, grpc_method="Login")
            > 0
        )
        # Bounded labels only: no login, user id or token anywhere in the exposition.
        assert login not in after.text
        assert first.user_id not in after.text
        assert first.refresh_token not in after.text


async def test_throttles_and_lockouts_are_counted(database_url) -> None:
    async with server_with(
        database_url, metrics_listen="127.0.0.1:0", max_failed_logins=2, login_attempts_per_account=4
    ) as (stub, running):
        login = new_login()
        await stub.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
        before = await scrape_of(running)
        reasons = []
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.Login(auth_pb2.LoginRequest(login=login, password="a wrong password!"))
            reasons.append(failure(error.value).reason)
        # Two checked failures lock the account; a locked login answers like an unknown one.
        assert reasons == ["INVALID_CREDENTIALS"] * 4 + ["RATE_LIMITED"]
        after = await scrape_of(running)
        logins = "identity_logins_total"
        assert delta(after, before, logins, kind="login", outcome="bad_credentials") == 2
        assert delta(after, before, logins, kind="login", outcome="locked_out") == 2
        assert delta(after, before, logins, kind="login", outcome="throttled") == 1
        # One account locked once, however many attempts it refuses afterwards.
        assert delta(after, before, "identity_account_lockouts_total") == 1
        assert delta(after, before, "identity_login_throttled_total", scope="account") == 1
        assert delta(after, before, "identity_login_throttled_total", scope="address") == 0


async def test_permission_decisions_and_the_cache_are_counted(database_url) -> None:
    async with server_with(database_url, metrics_listen="127.0.0.1:0") as (stub, running):
        services = running.services
        user = await stub.Register(auth_pb2.RegisterRequest(login=new_login(), password=STRONG_PASSWORD))
        user_id = user.user.id
        granted = new_permission()
        await give(services, user_id, granted)
        key = await service_key(services, "metrics-peer")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            rbac = rbac_pb2_grpc.RbacServiceStub(channel)
            # Warm: the first check reads the user's grants (a miss).
            assert (await rbac.CheckPermission(by_user(user_id, granted), metadata=key)).allowed
            before = await scrape_of(running)
            for _ in range(5):
                assert (await rbac.CheckPermission(by_user(user_id, granted), metadata=key)).allowed
            unknown = await rbac.CheckPermission(by_user(user_id, "no.such.permission"), metadata=key)
            assert unknown.reason == rbac_pb2.DECISION_REASON_NO_SUCH_PERMISSION
            after_checks = await scrape_of(running)
            # An RBAC write drops every cache entry; the next check reads again.
            await give(services, user_id, new_permission())
            assert (await rbac.CheckPermission(by_user(user_id, granted), metadata=key)).allowed
            after_write = await scrape_of(running)

        decisions = "identity_permission_decisions_total"
        assert delta(after_checks, before, decisions, reason="GRANTED") == 5
        assert delta(after_checks, before, decisions, reason="NO_SUCH_PERMISSION") == 1
        assert delta(after_checks, before, decisions, reason="NOT_GRANTED") == 0
        assert delta(after_checks, before, "identity_permission_cache_hits_total") == 6
        assert delta(after_checks, before, "identity_permission_cache_misses_total") == 0
        assert delta(after_write, after_checks, "identity_permission_cache_invalidations_total") >= 1
        assert delta(after_write, after_checks, "identity_permission_cache_misses_total") == 1
        handled = "grpc_server_handled_total"
        assert (
            delta(
                after_checks,
                before,
                handled,
                grpc_service=RBAC,
                grpc_method="CheckPermission",
                grpc_code="OK",
            )
            == 6
        )


async def test_state_gauges_and_build_info(database_url) -> None:
    async with server_with(
        database_url, metrics_listen="127.0.0.1:0", db_pool_max=7, partition_months_ahead=3
    ) as (_, running):

        def sampled(now: Scrape) -> bool:
            return (
                now.value("identity_signing_keys_published") > 0
                and now.value("identity_rbac_lease_held") == 1
            )

        now = await scrape_of(running)
        deadline = time.monotonic() + 10
        while not sampled(now) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            now = await scrape_of(running)
        keys = await running.services.keys.list_keys()
        active = next(key for key in keys if key.state == "active")
        assert now.value("identity_signing_key_active_created_timestamp_seconds") == pytest.approx(
            active.created_at.timestamp()
        )
        # The active and the pre-published next key.
        assert now.value("identity_signing_keys_published") == 2
        assert now.value("identity_rbac_lease_held") == 1
        assert now.value("identity_db_pool_connections_max") == 7
        assert 0 <= now.value("identity_db_pool_connections_in_use") <= 7
        assert now.value("identity_db_pool_requests_waiting") == 0
        # The server ensured 3 months ahead at start (other tests may have made more).
        ready = await running.services.partitions.months_ready_ahead()
        assert ready >= 3
        assert now.value("identity_login_history_partition_months_ahead") == ready
        assert now.total("identity_build_info") == 1
        assert "identity_redis_errors" in now.names
        assert "identity_db_pool_timeouts" in now.names


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redis_errors_are_counted(database_url) -> None:
    async with server_with(
        database_url, metrics_listen="127.0.0.1:0", redis_url=f"redis://127.0.0.1:{_closed_port()}/0"
    ) as (stub, running):
        before = await scrape_of(running)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Login(auth_pb2.LoginRequest(login=new_login(), password=STRONG_PASSWORD))
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        after = await scrape_of(running)
        assert delta(after, before, "identity_redis_errors_total") >= 1
        assert (
            delta(
                after,
                before,
                "grpc_server_handled_total",
                grpc_service=AUTH,
                grpc_method="Login",
                grpc_code="UNAVAILABLE",
            )
            == 1
        )


async def test_pool_timeouts_are_counted(database_url) -> None:
    async with server_with(
        database_url,
        metrics_listen="127.0.0.1:0",
        db_pool_min=1,
        db_pool_max=1,
        db_timeout=timedelta(seconds=1),
    ) as (stub, running):
        before = await scrape_of(running)
        # Hold the one pooled connection while a call needs it.
        async with running.services.db.reader():
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.Register(auth_pb2.RegisterRequest(login=new_login(), password=STRONG_PASSWORD))
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        after = await scrape_of(running)
        assert delta(after, before, "identity_db_pool_timeouts_total") >= 1


MONITORING = Path(__file__).resolve().parents[2] / "monitoring"


def _referenced_series() -> set[str]:
    referenced: set[str] = set()
    for path in (MONITORING / "alerts.yml", MONITORING / "grafana-dashboard.json"):
        referenced |= set(re.findall(r"\b((?:identity|grpc_server)_[a-z_]+)\b", path.read_text()))
    return referenced


async def test_the_alerts_and_the_dashboard_name_only_exported_series(database_url) -> None:
    referenced = _referenced_series()
    assert len(referenced) > 15
    async with server_with(database_url, metrics_listen="127.0.0.1:0") as (stub, running):
        await stub.GetJwks(auth_pb2.GetJwksRequest())
        exported = {name for name, _ in (await scrape_of(running)).samples}
    assert referenced <= exported, referenced - exported


async def test_a_call_abandoned_by_its_client_is_counted_cancelled(database_url) -> None:
    # Cost 14 takes about a second a hash: the client's deadline passes while it runs.
    async with server_with(database_url, metrics_listen="127.0.0.1:0", bcrypt_rounds=14) as (stub, running):
        before = await scrape_of(running)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Register(
                auth_pb2.RegisterRequest(login=new_login(), password=STRONG_PASSWORD), timeout=0.2
            )
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        labels = {"grpc_service": AUTH, "grpc_method": "Register"}
        deadline = time.monotonic() + 10
        while True:
            after = await scrape_of(running)
            if delta(after, before, "grpc_server_handled_total", grpc_code="CANCELLED", **labels) == 1:
                break
            assert time.monotonic() < deadline, "the cancelled call was not counted"
            await asyncio.sleep(0.1)
        assert delta(after, before, "grpc_server_handled_total", grpc_code="OK", **labels) == 0


async def test_a_taken_metrics_port_stops_the_server_with_a_clear_error(database_url) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{port} for metrics"):
            async with server_with(database_url, metrics_listen=f"127.0.0.1:{port}"):
                pass


def _terminate_other_backends(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


async def test_a_lost_rbac_listening_connection_is_counted() -> None:
    # A database of its own: every connection to it is cut.
    with fresh_database("identity_metrics") as url:
        await asyncio.to_thread(upgrade, url)
        async with server_with(url, metrics_listen="127.0.0.1:0") as (_, running):
            before = await scrape_of(running)
            await asyncio.to_thread(_terminate_other_backends, url)
            deadline = time.monotonic() + 10
            while delta(await scrape_of(running), before, "identity_rbac_lease_losses_total") != 1:
                assert time.monotonic() < deadline, "the lost lease was not counted"
                await asyncio.sleep(0.1)
            # It reconnects and holds its lease again.
            while (await scrape_of(running)).value("identity_rbac_lease_held") != 1:
                assert time.monotonic() < deadline + 10, "the lease was not taken again"
                await asyncio.sleep(0.2)


async def test_second_factor_outcomes_are_counted(database_url) -> None:
    clock = SteppedClock()
    async with server_with(database_url, clock=clock, metrics_listen="127.0.0.1:0") as (stub, running):
        enrolled = await enrol(stub, clock)
        before = await scrape_of(running)
        first = await ticket(stub, enrolled.account)
        assert await outcome(stub.VerifyMfa(verify(first, wrong_code(enrolled.secret, clock.now())))) == (
            "MFA_CODE_INVALID"
        )
        assert await outcome(stub.VerifyMfa(verify(first, code_at(enrolled.secret, clock.now())))) == "OK"
        after = await scrape_of(running)
        mfa = "identity_mfa_checks_total"
        assert delta(after, before, mfa, outcome="mfa_required") == 1
        assert delta(after, before, mfa, outcome="mfa_failed") == 1
        assert delta(after, before, mfa, outcome="mfa_success") == 1
