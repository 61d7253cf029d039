"""`identity serve` as a process: graceful SIGTERM, health that tracks its
dependencies, fail-closed on a lost database, and a request id on every log line."""

from __future__ import annotations

import threading
import time

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from identity.store.migrate import upgrade
from identity.v1 import auth_pb2, auth_pb2_grpc
from tests.e2e.conftest import health_status, start_server_process, wait_for
from tests.support import ADMIN_URL, STRONG_PASSWORD, failure, fresh_database, new_login

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_sigterm_lets_in_flight_calls_finish(database_url, tmp_path):
    # Cost 14 makes one Register take about a second: long enough to be in flight.
    server = start_server_process(database_url, tmp_path, IDENTITY_BCRYPT_ROUNDS="14")
    outcome: dict[str, object] = {}
    channel = grpc.insecure_channel(server.address)
    stub = auth_pb2_grpc.AuthServiceStub(channel)

    def register() -> None:
        try:
            outcome["reply"] = stub.Register(
                auth_pb2.RegisterRequest(login=new_login("slow"), password=STRONG_PASSWORD), timeout=30
            )
        except grpc.RpcError as error:
            outcome["error"] = error

    worker = threading.Thread(target=register)
    worker.start()
    time.sleep(0.3)
    started = time.monotonic()
    exit_code = server.stop()
    worker.join(timeout=30)
    channel.close()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["reply"].user.id  # type: ignore[attr-defined]
    assert exit_code == 0
    assert time.monotonic() - started < 12
    assert health_status(server.port, timeout=0.5) is None  # no longer listening


def test_health_is_not_serving_without_redis(database_url, tmp_path):
    server = start_server_process(
        database_url, tmp_path, expect_serving=False, IDENTITY_REDIS_URL="redis://127.0.0.1:1/0"
    )
    try:
        assert health_status(server.port) == NOT_SERVING
        assert health_status(server.port, "identity.v1.AuthService") == NOT_SERVING
    finally:
        server.stop()


def test_lost_database_means_not_serving_and_unavailable_never_internal(tmp_path):
    with fresh_database("identity_lost") as url:
        upgrade(url)
        server = start_server_process(url, tmp_path)
        try:
            assert health_status(server.port) == SERVING
            name = url.rsplit("/", 1)[1]
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            wait_for(
                lambda: health_status(server.port) == NOT_SERVING, "health to turn NOT_SERVING", timeout=10
            )
            with grpc.insecure_channel(server.address) as channel:
                stub = auth_pb2_grpc.AuthServiceStub(channel)
                with pytest.raises(grpc.RpcError) as err:
                    stub.Login(auth_pb2.LoginRequest(login=new_login(), password=STRONG_PASSWORD), timeout=15)
            got = failure(err.value)
            assert got.code == grpc.StatusCode.UNAVAILABLE
            assert got.reason == "BACKEND_UNAVAILABLE"
            assert "database" not in got.message.lower() and "select" not in got.message.lower()
        finally:
            server.stop()


def test_every_log_line_of_a_call_has_its_request_id(database_url, tmp_path):
    server = start_server_process(database_url, tmp_path)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            stub.Register(
                auth_pb2.RegisterRequest(login=new_login("logged"), password=STRONG_PASSWORD),
                metadata=(("x-request-id", "req-abc-123"),),
            )
            with pytest.raises(grpc.RpcError):
                stub.Login(
                    auth_pb2.LoginRequest(login=new_login(), password="wrong password!"),
                    metadata=(("x-request-id", "req-def-456"),),
                )
    finally:
        server.stop()
    lines = server.log_lines()
    call_lines = [line for line in lines if "rpc" in line]
    assert any(
        line.get("request_id") == "req-abc-123" and line.get("event") == "user_registered"
        for line in call_lines
    )
    assert any(
        line.get("request_id") == "req-def-456" and line.get("outcome") == "INVALID_CREDENTIALS"
        for line in call_lines
    )
    assert all(line.get("request_id") for line in call_lines)
    text = server.log_path.read_text()
    assert STRONG_PASSWORD not in text and "wrong password!" not in text
