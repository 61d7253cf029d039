"""Two `identity serve` workers sharing one gRPC port (SO_REUSEPORT) and one
PROMETHEUS_MULTIPROC_DIR, as a supervisor runs them: one metrics listener serves
the host, one scrape sees the calls of both workers, and when the serving worker
exits the other takes the listener over with every count kept."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc

from identity.v1 import auth_pb2, auth_pb2_grpc
from tests.e2e.conftest import BIN, ServerProcess, free_port, server_env, wait_for
from tests.observability_support import scrape

CALLS = 40


def start_worker(database_url: str, port: int, log_dir: Path, name: str, **env: str) -> ServerProcess:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "identity"), "serve"],
            env=server_env(database_url, port, **env),
            stdout=log,
            stderr=log,
        )
    worker = ServerProcess(process, port, log_path)
    wait_for(
        lambda: (
            process.poll() is not None or any(line.get("event") == "serving" for line in worker.log_lines())
        ),
        f"{name} to serve",
    )
    assert process.poll() is None, log_path.read_text()[-2000:]
    return worker


def jwks_calls(worker: ServerProcess) -> int:
    return sum(
        1 for line in worker.log_lines() if line.get("event") == "rpc_done" and line.get("rpc") == "GetJwks"
    )


def serves_metrics(worker: ServerProcess) -> bool:
    return any(line.get("event") == "metrics_serving" for line in worker.log_lines())


def handled(port: int) -> float:
    return scrape(port).value(
        "grpc_server_handled_total",
        grpc_service="identity.v1.AuthService",
        grpc_method="GetJwks",
        grpc_code="OK",
    )


def test_one_scrape_sees_every_worker(database_url, tmp_path) -> None:
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        "IDENTITY_GRPC_REUSEPORT": "1",
        "IDENTITY_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        # A line per call, so the test can tell which worker answered.
        "IDENTITY_LOG_LEVEL": "debug",
    }
    workers = [start_worker(database_url, grpc_port, tmp_path, f"worker{i}", **env) for i in (1, 2)]
    try:
        # Exactly one worker holds the metrics port.
        assert sum(serves_metrics(w) for w in workers) == 1
        # One connection per call: the kernel spreads connections across the workers.
        for _ in range(CALLS):
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest(), timeout=10)
        per_worker = [jwks_calls(w) for w in workers]
        assert sum(per_worker) == CALLS
        assert all(count > 0 for count in per_worker), per_worker
        # The other worker's tallies reach the shared files within a second.
        wait_for(lambda: handled(metrics_port) == CALLS, "one scrape to count every call", timeout=5)
        assert handled(metrics_port) == CALLS

        # Both workers' gauges are live: the lease gauge is the minimum over them.
        wait_for(lambda: scrape(metrics_port).value("identity_rbac_lease_held") == 1, "both leases held")

        # The serving worker exits; the other takes the listener over, counts intact.
        serving = next(w for w in workers if serves_metrics(w))
        other = next(w for w in workers if w is not serving)
        assert serving.stop() == 0
        wait_for(lambda: serves_metrics(other), "the other worker to serve metrics", timeout=15)
        assert handled(metrics_port) == CALLS
        assert scrape(metrics_port).value("identity_rbac_lease_held") == 1
    finally:
        for worker in workers:
            worker.stop()
