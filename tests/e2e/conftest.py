"""End-to-end fixtures: `identity serve` as a real process, a real Envoy in front
of it (`identity gateway`), and the real grpcurl binary."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support import REDIS_URL, TEST_SECRET_KEY

BIN = Path(sys.executable).parent
WEBSITE_ORIGIN = "http://localhost:3000"
# The loopback address the test gateway connects to the server from.
GATEWAY_SOURCE = "127.0.0.2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    env.update(
        IDENTITY_DATABASE_URL=database_url,
        IDENTITY_REDIS_URL=REDIS_URL,
        IDENTITY_REDIS_PREFIX=f"identity-e2e-{port}:",
        IDENTITY_GRPC_LISTEN=f"127.0.0.1:{port}",
        IDENTITY_SECRET_KEY=TEST_SECRET_KEY,
        IDENTITY_BCRYPT_ROUNDS="4",
        IDENTITY_LOG_FORMAT="json",
        IDENTITY_LOGIN_ATTEMPTS_PER_IP="1000000",
        IDENTITY_LOGIN_ATTEMPTS_PER_ACCOUNT="1000",
    )
    env.update(extra)
    return env


def channel(port: int, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    target = f"127.0.0.1:{port}"
    return grpc.insecure_channel(target) if credentials is None else grpc.secure_channel(target, credentials)


def health_status(
    port: int, service: str = "", timeout: float = 2.0, credentials: grpc.ChannelCredentials | None = None
) -> int | None:
    try:
        with channel(port, credentials) as channel_:
            reply = health_pb2_grpc.HealthStub(channel_).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
            return int(reply.status)
    except grpc.RpcError:
        return None


def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def identity_cli(database_url: str, *args: str) -> str:
    """Run the `identity` CLI against ``database_url``; its standard output."""
    result = subprocess.run(
        [str(BIN / "identity"), *args],
        capture_output=True,
        text=True,
        env=server_env(database_url, free_port(), IDENTITY_LOG_LEVEL="warning"),
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"raw": raw})
        return lines

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server_process(
    database_url: str,
    log_dir: Path,
    *,
    expect_serving: bool = True,
    credentials: grpc.ChannelCredentials | None = None,
    start_timeout: float = 20.0,
    **extra_env: str,
) -> ServerProcess:
    """`identity serve` on a free port; ``credentials`` to reach it when it speaks TLS."""
    port = free_port()
    log_path = log_dir / f"identity-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "identity"), "serve"],
            env=server_env(database_url, port, **extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(process, port, log_path)
    try:
        wanted = {health_pb2.HealthCheckResponse.SERVING}
        if not expect_serving:
            wanted.add(health_pb2.HealthCheckResponse.NOT_SERVING)
        wait_for(
            lambda: process.poll() is not None or health_status(port, credentials=credentials) in wanted,
            "identity serve to answer health checks",
            timeout=start_timeout,
        )
    except TimeoutError:
        server.stop()
        raise
    if process.poll() is not None:
        raise RuntimeError(f"identity serve exited: {log_path.read_text()[-2000:]}")
    return server


@pytest.fixture(scope="session")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Behind one Envoy, which connects from GATEWAY_SOURCE: only it is believed about
    # x-forwarded-for, not a direct caller on 127.0.0.1.
    server = start_server_process(
        database_url, tmp_path_factory.mktemp("served"), IDENTITY_TRUSTED_PROXIES=f"{GATEWAY_SOURCE}/32"
    )
    yield server
    server.stop()


@dataclass
class Gateway:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    context: ssl.SSLContext | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_gateway(
    upstream: str,
    log_dir: Path,
    *args: str,
    context: ssl.SSLContext | None = None,
    ready_status: int = 200,
) -> Gateway:
    """`identity gateway` on a free port in front of ``upstream``, once the JWKS path
    answers ``ready_status``; HTTPS when ``context`` (trusting its certificate) is
    given with --tls-cert/--tls-key."""
    port = free_port()
    log_path = log_dir / f"envoy-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(BIN / "identity"),
                "gateway",
                "--listen",
                f"127.0.0.1:{port}",
                "--upstream",
                upstream,
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    scheme = "https" if context is not None else "http"
    gateway = Gateway(f"{scheme}://127.0.0.1:{port}", process, log_path, context)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"envoy exited early: {log_path.read_text()[-2000:]}")
        try:
            status, _, _ = http("GET", gateway.base_url + "/v1/auth/jwks", context=context)
            return status == ready_status
        except OSError:
            return False

    try:
        wait_for(ready, "envoy to answer")
    except TimeoutError:
        gateway.stop()
        raise
    return gateway


@pytest.fixture(scope="session")
def gateway(served: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(
        served.address,
        tmp_path_factory.mktemp("envoy"),
        "--cors-origin",
        WEBSITE_ORIGIN,
        "--upstream-source",
        GATEWAY_SOURCE,
    )
    yield gateway
    gateway.stop()


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    *,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """One HTTP/JSON call; returns (status, parsed JSON body or None, lower-cased headers)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            status, raw, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, raw, got = error.code, error.read(), dict(error.headers)
    try:
        parsed = json.loads(raw) if raw.strip() else None
    except ValueError:
        parsed = raw.decode(errors="replace")  # Envoy's own plain-text answers (404, 400)
    return status, parsed, {k.lower(): v for k, v in got.items()}


def error_reason(body: Any) -> str | None:
    """The ErrorInfo reason of a transcoded google.rpc.Status body."""
    for detail in (body or {}).get("details", []):
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str(detail.get("reason"))
    return None


@pytest.fixture(scope="session")
def grpcurl() -> str:
    found = shutil.which("grpcurl") or str(BIN / "grpcurl")
    if not Path(found).exists():
        pytest.fail("grpcurl is not installed: run `make install`")
    return found
