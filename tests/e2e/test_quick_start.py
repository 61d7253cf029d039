"""The Quick start's `make run` stack (scripts/dev-stack), on a machine where no
PostgreSQL or Redis answers: it starts private ones, migrates, serves gRPC,
HTTP/JSON and metrics, and stops everything it started on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.e2e.conftest import BIN, free_port, http, wait_for
from tests.observability_support import scrape
from tests.support import STRONG_PASSWORD, new_login

ROOT = Path(__file__).resolve().parents[2]


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_dev_stack_starts_private_services_and_serves_both_paths():
    dev_dir = Path(tempfile.mkdtemp(prefix="identity-dev-"))
    dev_dir.chmod(0o755)  # the private PostgreSQL runs as the postgres user
    grpc_port, http_port, pg_port, redis_port, metrics_port = (free_port() for _ in range(5))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDENTITY_", "DEV_"))}
    env.update(
        DEV_DIR=str(dev_dir),
        DEV_SHARED_PG_PORT="1",  # nothing answers there: private instances are needed
        DEV_SHARED_REDIS_PORT="1",
        DEV_PG_PORT=str(pg_port),
        DEV_REDIS_PORT=str(redis_port),
        IDENTITY_GRPC_LISTEN=f"127.0.0.1:{grpc_port}",
        IDENTITY_HTTP_LISTEN=f"127.0.0.1:{http_port}",
        IDENTITY_BCRYPT_ROUNDS="4",
        IDENTITY_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
    )
    log = (dev_dir / "stack.log").open("wb")
    stack = subprocess.Popen(
        [str(ROOT / "scripts/dev-stack")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{http_port}"
    try:

        def envoy_up() -> bool:
            assert stack.poll() is None, (dev_dir / "stack.log").read_text()[-3000:]
            try:
                return http("GET", base + "/v1/auth/jwks")[0] == 200
            except OSError:
                return False

        wait_for(envoy_up, "the dev stack", timeout=120)
        login = new_login("quick")
        assert (
            http("POST", base + "/v1/auth/register", {"login": login, "password": STRONG_PASSWORD})[0] == 200
        )
        status, tokens, _ = http(
            "POST", base + "/v1/auth/login", {"login": login, "password": STRONG_PASSWORD}
        )
        assert status == 200 and tokens["access_token"]
        # `make run` with IDENTITY_METRICS_LISTEN: the Login above is on the scrape.
        scraped = scrape(metrics_port)
        assert scraped.value("identity_logins_total", kind="login", outcome="success") == 1

        listed = subprocess.run(
            [str(BIN / "grpcurl"), "-plaintext", f"127.0.0.1:{grpc_port}", "list"],
            capture_output=True,
            text=True,
        )
        assert {"identity.v1.AuthService", "identity.v1.RbacService"} <= set(listed.stdout.split())
        assert _port_open(pg_port) and _port_open(redis_port)
        secret = dev_dir / "secret-key"
        assert secret.stat().st_mode & 0o077 == 0

        # The stack's last lines say how to point the CLI at it; doing so works.
        exports = next(
            line for line in (dev_dir / "stack.log").read_text().splitlines() if "export IDENTITY_" in line
        )
        cli_env = {k: v for k, v in env.items() if not k.startswith("IDENTITY_")}
        for assignment in exports.split("export ", 1)[1].split():
            name, _, value = assignment.partition("=")
            cli_env[name] = value.strip("'")
        doctor = subprocess.run(
            [str(BIN / "identity"), "doctor"], env=cli_env, capture_output=True, text=True, timeout=60
        )
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "opens with this secret" in doctor.stdout
    finally:
        stack.send_signal(signal.SIGTERM)
        try:
            stack.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            raise
        finally:
            log.close()
    wait_for(
        lambda: not any(_port_open(p) for p in (grpc_port, http_port, pg_port, redis_port)), "ports to close"
    )
