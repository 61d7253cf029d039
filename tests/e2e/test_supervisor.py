"""`identity serve --workers N`: a supervisor and its workers as real processes.

A crashed worker is replaced, SIGTERM drains the calls in flight on every worker,
a port held by anything else stops the group before it starts, and health says
one thing for the whole group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from identity.v1 import auth_pb2, auth_pb2_grpc
from tests.e2e.conftest import BIN, ServerProcess, free_port, health_status, server_env, wait_for
from tests.observability_support import scrape
from tests.support import STRONG_PASSWORD, new_login

SERVING = health_pb2.HealthCheckResponse.SERVING


def children(pid: int) -> set[int]:
    raw = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(part) for part in raw.split()}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def start_group(database_url: str, log_dir: Path, workers: int = 2, **extra: str) -> ServerProcess:
    port = free_port()
    log_path = log_dir / f"supervisor-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "identity"), "serve", "--workers", str(workers)],
            env=server_env(database_url, port, **extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    group = ServerProcess(process, port, log_path)
    try:
        wait_for(
            lambda: (
                process.poll() is not None
                or any(e.get("event") == "workers_ready" for e in group.log_lines())
            ),
            "every worker to be ready",
            timeout=60,
        )
    except TimeoutError:
        group.stop()
        raise
    assert process.poll() is None, log_path.read_text()[-2000:]
    return group


@pytest.fixture
def group(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    started = start_group(database_url, tmp_path)
    yield started
    started.stop()


def check_on_fresh_connections(port: int, count: int) -> list[int | None]:
    """Health over `count` new connections: the kernel spreads them across workers."""
    return [health_status(port) for _ in range(count)]


def test_workers_share_the_port_and_answer_serving(group: ServerProcess) -> None:
    workers = children(group.process.pid)
    assert len(workers) == 2
    assert check_on_fresh_connections(group.port, 12) == [SERVING] * 12


def test_a_crashed_worker_is_replaced(group: ServerProcess) -> None:
    before = children(group.process.pid)
    victim = min(before)
    survivor = max(before)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(children(group.process.pid) - {victim}) == 2, "a replacement worker", timeout=30)
    after = children(group.process.pid)
    assert survivor in after and victim not in after
    replacement = (after - before).pop()
    wait_for(
        lambda: sum(e.get("event") == "serving" for e in group.log_lines()) == 3, "the replacement to listen"
    )
    # Every connection, whichever worker the kernel gives it to, is served.
    channel_answers = []
    for _ in range(12):
        with grpc.insecure_channel(group.address) as channel:
            reply = auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest(), timeout=5)
            channel_answers.append(len(reply.keys) > 0)
    assert all(channel_answers)
    exited = [e for e in group.log_lines() if e.get("event") == "worker_exited"]
    assert exited and exited[0]["worker_pid"] == victim and exited[0]["code"] == -signal.SIGKILL
    assert alive(replacement)
    assert group.stop() == 0


def test_sigterm_drains_calls_in_flight_on_every_worker(database_url: str, tmp_path: Path) -> None:
    # bcrypt cost 12 keeps each Register in flight for a few hundred milliseconds.
    group = start_group(
        database_url,
        tmp_path,
        IDENTITY_BCRYPT_ROUNDS="12",
        IDENTITY_LOG_LEVEL="debug",
        IDENTITY_SHUTDOWN_GRACE_SECONDS="30",
    )
    workers = children(group.process.pid)
    # One connection per call: 12 connections reach both workers but with odds of 1 in 2048.
    # (A local subchannel pool: channels to one target otherwise share one connection.)
    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.insecure_channel(group.address, options=own_connection) for _ in range(12)]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=10)
    outcomes: list[Any] = [None] * len(channels)

    def register(slot: int) -> None:
        stub = auth_pb2_grpc.AuthServiceStub(channels[slot])
        try:
            outcomes[slot] = stub.Register(
                auth_pb2.RegisterRequest(login=new_login("drain"), password=STRONG_PASSWORD), timeout=60
            )
        except grpc.RpcError as error:
            outcomes[slot] = error

    threads = [threading.Thread(target=register, args=(slot,)) for slot in range(len(channels))]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    group.process.send_signal(signal.SIGTERM)
    wait_for(
        lambda: {e.get("worker") for e in group.log_lines() if e.get("event") == "stopping"} == {0, 1},
        "both workers to start draining",
    )
    time.sleep(0.2)  # from the log line to the health flip is one await
    # While draining, no worker claims to be serving on a connection it already has.
    drained_health = []
    for channel in channels[:4]:
        try:
            drained_health.append(
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
            )
        except grpc.RpcError as error:
            drained_health.append(error.code())
    assert group.process.wait(timeout=60) == 0
    for thread in threads:
        thread.join(timeout=60)
    for channel in channels:
        channel.close()

    failures = [o for o in outcomes if not isinstance(o, auth_pb2.RegisterResponse)]
    assert not failures, failures
    assert SERVING not in drained_health
    lines = group.log_lines()
    stopping_at = next(e["timestamp"] for e in lines if e.get("event") == "supervisor_stopping")
    finished = [e for e in lines if e.get("event") == "rpc_done" and e.get("rpc") == "Register"]
    assert len(finished) == len(channels)
    # Calls finished after the signal on both workers: each drained its own.
    assert {e["worker"] for e in finished if e["timestamp"] > stopping_at} == {0, 1}
    assert {e["worker"] for e in lines if e.get("event") == "stopped"} == {0, 1}
    assert not any(alive(pid) for pid in workers)
    assert health_status(group.port, timeout=0.5) is None


def test_a_port_in_use_stops_the_group_before_it_starts(database_url: str, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = subprocess.run(
            [str(BIN / "identity"), "serve", "--workers", "2"],
            env=server_env(database_url, port),
            capture_output=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert b"cannot listen on 127.0.0.1:" in result.stderr
    assert b"in use" in result.stderr
    assert b"worker_started" not in result.stderr


def test_a_reuseport_server_already_on_the_port_is_not_joined(database_url: str, tmp_path: Path) -> None:
    """SO_REUSEPORT would let the group silently share a port with another server."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = subprocess.run(
            [str(BIN / "identity"), "serve", "--workers", "2"],
            env=server_env(database_url, port),
            capture_output=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert b"in use" in result.stderr


def test_a_worker_that_cannot_start_fails_the_group(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [str(BIN / "identity"), "serve", "--workers", "2"],
        env=server_env("postgresql://postgres@127.0.0.1:1/nothing", port, IDENTITY_DB_TIMEOUT_SECONDS="1"),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert b"before it was ready" in result.stderr, result.stderr[-3000:]
    assert health_status(port, timeout=0.5) is None


def test_one_metrics_scrape_sees_every_worker_of_the_group(database_url: str, tmp_path: Path) -> None:
    """With metrics on, the supervisor gives its workers one multiprocess directory: the
    host's one listener counts the calls of all of them."""
    metrics_port = free_port()
    group = start_group(
        database_url,
        tmp_path,
        IDENTITY_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
        IDENTITY_LOG_LEVEL="debug",
    )
    try:
        calls = 12
        for _ in range(calls):  # a connection each: the kernel spreads them over the workers
            channel = grpc.insecure_channel(
                f"127.0.0.1:{group.port}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            with channel:
                auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest(), timeout=10)
        answered_by = {
            e.get("worker")
            for e in group.log_lines()
            if e.get("event") == "rpc_done" and e.get("rpc") == "GetJwks"
        }
        assert answered_by == {0, 1}  # 12 connections: both workers answered some

        def counted() -> float:
            return scrape(metrics_port).value(
                "grpc_server_handled_total",
                grpc_service="identity.v1.AuthService",
                grpc_method="GetJwks",
                grpc_code="OK",
            )

        wait_for(lambda: counted() == calls, "one scrape to count every worker's calls", timeout=15)
    finally:
        group.stop()
