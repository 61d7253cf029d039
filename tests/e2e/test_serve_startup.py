"""Start-up order of `identity serve` and of `make run`: a busy port is refused before
anything else starts; a dependency down at start is a warning, not silence."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port, start_server_process

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_redis_down_at_start_is_a_warning_before_serving(database_url, tmp_path):
    port = free_port()
    server = start_server_process(
        database_url, tmp_path, expect_serving=False, IDENTITY_REDIS_URL=f"redis://127.0.0.1:{port}/0"
    )
    try:
        events = [line.get("event") for line in server.log_lines()]
        warning = next(line for line in server.log_lines() if line.get("event") == "dependency_down")
    finally:
        server.stop()
    assert warning["level"] == "warning" and warning["dependency"] == "redis"
    assert warning["at"] == f"127.0.0.1:{port}"
    assert events.index("dependency_down") < events.index("serving")


def test_second_dev_stack_on_a_busy_port_stops_before_starting_anything(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IDENTITY_", "DEV_"))}
        env.update(
            DEV_DIR=str(tmp_path),
            DEV_SHARED_PG_PORT="1",  # would start a private PostgreSQL if it got that far
            DEV_SHARED_REDIS_PORT="1",
            IDENTITY_GRPC_LISTEN=f"127.0.0.1:{port}",
            IDENTITY_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
        )
        done = subprocess.run(
            [str(ROOT / "scripts/dev-stack")], env=env, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1
    assert f"port {port} is in use" in done.stderr and len(done.stderr.splitlines()) == 2
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "pg").exists() and not (tmp_path / "secret-key").exists()
