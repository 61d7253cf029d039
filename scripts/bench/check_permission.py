#!/usr/bin/env python3
"""CheckPermission throughput and latency against the bare grpc.aio echo ceiling.

One command from a fresh clone (`make bench`, or `.venv/bin/python
scripts/bench/check_permission.py`), with PostgreSQL and Redis on 127.0.0.1 as for
the tests. In one run it:

1. creates a throw-away database (like the tests), migrates it, and seeds a user
   holding a role that carries `catalog.films.read`, plus a service key;
2. starts N bare echo processes (scripts/bench/echo_server.py) and N `identity serve`
   processes (IDENTITY_GRPC_REUSEPORT=1), each set sharing one port; N = cores;
3. drives both with the same h2load command, CheckPermission(user_id,
   catalog.films.read) with the service key: a warm-up each, then alternating
   closed-loop rounds at full speed (echo, identity, echo, ...: drift in the machine's
   speed hits both alike; the ratio is the median of the rounds'), then one open-loop
   run each at half the echo rate (clients started 1 ms apart, so that their
   per-client timers do not fire together and send the calls in bursts);
4. verifies the answers (real gRPC calls must say allowed, GRANTED) and counts outcomes
   on the server side: every process logs how many checks it answered and how many were
   allowed when it stops; h2load alone would count a gRPC error as a success;
5. prints throughput, p50/p99 of both, their ratio, and p99 at half the echo rate.

With --metrics, a third set of `identity serve` processes runs with the metrics
listener on (IDENTITY_METRICS_LISTEN, one PROMETHEUS_MULTIPROC_DIR for the set, as a
supervisor runs workers) in the same alternating rounds, and the report adds its
throughput against metrics off, and the server CPU per call of both (target: metrics
on costs at most 10 % of the throughput at saturation, judged by CPU per call, which a
loaded machine disturbs far less than calls per second), and checks that one scrape
counted every check of both processes.

Targets (issue 4): throughput >= 70% of the echo ceiling; p99 <= 10 ms at half rate.
Exit status: 0 when met, 2 when a target is missed, 1 when the answers are wrong.
The figures are only as quiet as the machine: run it on an otherwise idle one.

h2load comes from the Debian package nghttp2-client; when it is missing and we are
root, the script installs it with apt-get, otherwise it says how."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg

from identity.config import Secret, Settings
from identity.container import build_services
from identity.services.rbac import Actor
from identity.store.migrate import upgrade
from identity.v1 import rbac_pb2, rbac_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
METHOD = "/identity.v1.RbacService/CheckPermission"
PERMISSION = "catalog.films.read"
TARGET_RATIO = 0.70
TARGET_P99_MS = 10.0
# Issue 12: CheckPermission with the metrics listener on keeps >= 90 % of the throughput.
TARGET_METRICS_RATIO = 0.90


@dataclass
class Run:
    label: str
    requests: int
    succeeded: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# -- set-up ------------------------------------------------------------------------------


def ensure_h2load() -> str:
    found = shutil.which("h2load")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing h2load (apt-get install -y nghttp2-client) ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "nghttp2-client"], check=False, env=env)
        found = shutil.which("h2load")
        if found:
            return found
    raise SystemExit("h2load is required: sudo apt-get install -y nghttp2-client (Debian/Ubuntu)")


def cpu_busy(seconds: float = 1.0) -> float:
    """The fraction of CPU time the machine spent busy over `seconds` (Linux), 0 if unknown."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total_0, idle_0 = sample()
        time.sleep(seconds)
        total_1, idle_1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 1 - (idle_1 - idle_0) / max(1, total_1 - total_0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def scratch_database(admin_url: str, keep: bool) -> Iterator[str]:
    name = f"identity_bench_{os.getpid()}_{secrets.token_hex(3)}"
    base = admin_url.rpartition("/")[0]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def seed(settings: Settings) -> tuple[str, str]:
    """(user id, service key): a user holding a role carrying PERMISSION."""
    services = await build_services(settings)
    try:
        await services.keys.ensure_ring()
        user = await services.auth.register(f"bench-{secrets.token_hex(4)}", "bench password 1234", "")
        role = await services.roles.create_role(Actor.OPERATOR, "bench reader", "benchmark", [PERMISSION])
        await services.roles.assign_role(Actor.OPERATOR, str(user.id), str(role.id), None)
        key = await services.service_keys.create("bench")
        return str(user.id), key.secret
    finally:
        await services.close()


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


# -- processes ---------------------------------------------------------------------------


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path

    def events(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                out.append(parsed)
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start(command: list[str], env: dict[str, str], log: Path) -> Process:
    with log.open("wb") as out:
        popen = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Process(popen, log)


def wait_serving(processes: list[Process], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.popen.poll() is not None:
                raise SystemExit(f"server exited:\n{process.log.read_text()[-3000:]}")
        if all(any(e.get("event") == "serving" for e in p.events()) for p in processes):
            return
        time.sleep(0.1)
    raise SystemExit("servers did not start in time")


def verify_answers(address: str, user_id: str, key: str, calls: int = 20) -> int:
    """Real calls over separate connections (so they reach every process)."""
    request = rbac_pb2.CheckPermissionRequest(
        subject=rbac_pb2.Subject(user_id=user_id), permission=PERMISSION
    )
    for _ in range(calls):
        with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            reply = rbac_pb2_grpc.RbacServiceStub(channel).CheckPermission(
                request, metadata=(("authorization", f"Bearer {key}"),), timeout=10
            )
        if not (reply.allowed and reply.reason == rbac_pb2.DECISION_REASON_GRANTED):
            raise SystemExit(f"unexpected answer: {reply}")
    return calls


# -- load --------------------------------------------------------------------------------


def h2load(
    binary: str,
    url: str,
    body: Path,
    headers: list[str],
    *,
    seconds: float,
    clients: int,
    streams: int,
    log: Path | None = None,
    rps_per_client: float | None = None,
) -> tuple[int, int, float]:
    """Runs h2load; returns (requests done, succeeded, elapsed seconds).

    Closed loop (no rate): every client keeps `streams` calls in flight for `seconds`.
    Open loop (a rate per client): the clients are started 1 ms apart. Started together,
    their per-client timers fire together and the calls arrive in bursts of one per
    client, which measures the burst rather than the rate."""
    command = [binary, url, "-d", str(body), "-c", str(clients), "-m", str(streams), "-t", "1"]
    if rps_per_client is None:
        command += ["-D", f"{round(seconds * 1000)}ms"]
    else:
        total = max(clients, round(rps_per_client * clients * seconds))
        command += ["--rps", f"{rps_per_client:.3f}", "-n", str(total), "-r", "1", "--rate-period", "1ms"]
    for header in headers:
        command += ["-H", header]
    if log is not None:
        command += ["--log-file", str(log)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    finished = re.search(r"finished in ([\d.]+)(m?s)", output)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", output)
    if result.returncode != 0 or finished is None or counts is None:
        raise SystemExit(f"h2load failed:\n{output}")
    elapsed = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    return int(counts.group(3)), int(counts.group(4)), elapsed


def latencies_ms(log: Path) -> list[float]:
    values = []
    for line in log.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            values.append(int(parts[2]) / 1000)
    return sorted(values)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(fraction * (len(values) - 1)))]


@dataclass
class Load:
    binary: str
    body: Path
    headers: list[str]
    seconds: float
    clients: int
    streams: int
    workdir: Path

    def run(self, label: str, port: int, *, seconds: float, rps: float | None = None) -> Run:
        log = self.workdir / f"{label}.log"
        done, ok, elapsed = h2load(
            self.binary, f"http://127.0.0.1:{port}{METHOD}", self.body, self.headers,
            seconds=seconds, clients=self.clients, streams=self.streams, log=log,
            rps_per_client=None if rps is None else rps / self.clients,
        )  # fmt: skip
        values = latencies_ms(log)
        return Run(label, done, ok, elapsed, percentile(values, 0.50), percentile(values, 0.99))


@dataclass
class Side:
    """One kind of server (echo or identity): its runs and what the clients completed."""

    name: str
    port: int
    processes: list[Process]
    full: list[Run]
    sent: int = 0
    half: Run | None = None
    metrics_port: int | None = None
    # Server CPU seconds and calls of the full-speed runs: CPU per call is far less
    # disturbed by other load on the machine than calls per second are.
    cpu: float = 0.0
    cpu_calls: int = 0
    cpu_rounds: list[float] = field(default_factory=list)  # CPU seconds per call, each full run

    def measure(
        self, load: Load, label: str, *, seconds: float, rps: float | None = None, full: bool = False
    ) -> Run:
        cpu_before = sum(p.cpu_seconds() for p in self.processes)
        run = load.run(label, self.port, seconds=seconds, rps=rps)
        if full:
            used = sum(p.cpu_seconds() for p in self.processes) - cpu_before
            self.cpu += used
            self.cpu_calls += run.requests
            self.cpu_rounds.append(used / run.requests if run.requests else 0.0)
        self.sent += run.requests
        return run

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu / self.cpu_calls * 1e6 if self.cpu_calls else 0.0

    def pooled(self, workdir: Path) -> tuple[float, float, float]:
        """(median calls/s over the rounds, p50 ms, p99 ms over every call of every round)."""
        values = sorted(v for run in self.full for v in latencies_ms(workdir / f"{run.label}.log"))
        rate = statistics.median(run.rate for run in self.full)
        return rate, percentile(values, 0.50), percentile(values, 0.99)


# -- the two servers ---------------------------------------------------------------------


def start_echo(processes: int, workdir: Path) -> Side:
    port = free_port()
    command = [sys.executable, str(ROOT / "scripts/bench/echo_server.py"), "--listen", f"127.0.0.1:{port}"]
    servers = [start(command, {**os.environ}, workdir / f"echo-{i}.out") for i in range(processes)]
    return Side("echo", port, servers, [])


def start_identity(
    processes: int, workdir: Path, database_url: str, redis_url: str, *, metrics: bool = False
) -> Side:
    port = free_port()
    name = "identity-metrics" if metrics else "identity"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    env.update(
        IDENTITY_DATABASE_URL=database_url,
        IDENTITY_REDIS_URL=redis_url,
        IDENTITY_REDIS_PREFIX=f"identity-bench-{port}:",
        IDENTITY_GRPC_LISTEN=f"127.0.0.1:{port}",
        IDENTITY_GRPC_REUSEPORT="1",
        IDENTITY_SECRET_KEY=env_secret(),
        IDENTITY_LOG_FORMAT="json",
        IDENTITY_LOG_LEVEL="info",
    )
    side = Side(name, port, [], [])
    if metrics:
        multiproc = workdir / "metrics"
        multiproc.mkdir()
        side.metrics_port = free_port()
        env.update(
            IDENTITY_METRICS_LISTEN=f"127.0.0.1:{side.metrics_port}", PROMETHEUS_MULTIPROC_DIR=str(multiproc)
        )
    command = [str(BIN / "identity"), "serve"]
    side.processes = [start(command, env, workdir / f"{name}-{i}.log") for i in range(processes)]
    return side


def scraped_checks(side: Side) -> tuple[int, int]:
    """CheckPermission calls counted by the metrics listener over every process: (answered
    OK, cancelled: in flight when h2load stopped a run)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{side.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts = {"OK": 0.0, "CANCELLED": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "grpc_server_handled_total" and labels.get("grpc_method") == "CheckPermission":
                counts[labels["grpc_code"]] = counts.get(labels["grpc_code"], 0.0) + sample.value
    return round(counts["OK"]), round(counts["CANCELLED"])


def echo_calls(side: Side) -> int:
    answered = sum(
        int(str(e["calls"])) for s in side.processes for e in s.events() if e.get("event") == "echo_totals"
    )
    if answered < side.sent:
        raise SystemExit(f"echo servers answered {answered} calls, h2load completed {side.sent}")
    return answered


def identity_checks(side: Side, workdir: Path) -> int:
    """Outcomes counted by the servers: every check allowed, and no failed call."""
    events = [e for s in side.processes for e in s.events()]
    totals = [e for e in events if e.get("event") == "authz_totals"]
    if len(totals) != len(side.processes):
        raise SystemExit(
            f"expected {len(side.processes)} authz_totals lines, got {len(totals)} (see {workdir})"
        )
    checks = sum(int(str(e["checks"])) for e in totals)
    allowed = sum(int(str(e["allowed"])) for e in totals)
    failed = [e for e in events if e.get("event") == "rpc_done" and e.get("outcome") != "OK"]
    if failed or allowed != checks or checks < side.sent:
        raise SystemExit(
            f"server-side outcomes are wrong: {checks} checks, {allowed} allowed, "
            f"{len(failed)} failed calls, {side.sent} completed by the clients (logs in {workdir})"
        )
    return checks


def benchmark(
    load: Load, echo: Side, identities: list[Side], rounds: int, warmup: float, verify: Any
) -> None:
    """Warm each up, then alternate full-speed runs (so drift in the machine's speed hits
    all alike), then one open-loop run each at half the echo rate."""
    sides = [echo, *identities]
    for side in sides:
        if warmup > 0:
            side.measure(load, f"{side.name}-warmup", seconds=warmup)
    for round_ in range(rounds):
        for side in sides:
            side.full.append(side.measure(load, f"{side.name}-{round_}", seconds=load.seconds, full=True))
    half_rate = statistics.median(run.rate for run in echo.full) / 2
    for side in sides:
        side.half = side.measure(load, f"{side.name}-half", seconds=load.seconds, rps=half_rate)
    for side in identities:
        side.sent += verify(side)


_SECRET = "bench-secret-" + secrets.token_hex(24)


def env_secret() -> str:
    return _SECRET


# -- report ------------------------------------------------------------------------------


def report(echo: Side, identity: Side, counted: tuple[int, int], load: Load, rounds: int) -> int:
    assert echo.half is not None and identity.half is not None
    echo_rate, echo_p50, echo_p99 = echo.pooled(load.workdir)
    id_rate, id_p50, id_p99 = identity.pooled(load.workdir)
    ratios = [i.rate / e.rate for e, i in zip(echo.full, identity.full, strict=True) if e.rate]
    ratio = statistics.median(ratios)
    print()
    print(
        f"CheckPermission vs bare grpc.aio echo: {len(echo.processes)} process(es) each on "
        f"{os.cpu_count()} cores; h2load -c {load.clients} -m {load.streams} -t 1; "
        f"{rounds} alternating rounds of {load.seconds:g}s"
    )
    print(f"{'':<34}{'calls/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    print(f"{'echo, full speed (ceiling)':<34}{echo_rate:>9.0f}{echo_p50:>9.2f}{echo_p99:>9.2f}")
    print(f"{'identity, full speed':<34}{id_rate:>9.0f}{id_p50:>9.2f}{id_p99:>9.2f}")
    for side in (echo, identity):
        half = side.half
        assert half is not None
        label = f"{side.name}, {half.rate:.0f}/s (half)"
        print(f"{label:<34}{half.rate:>9.0f}{half.p50_ms:>9.2f}{half.p99_ms:>9.2f}")
    print()
    shown = ", ".join(f"{r:.1%}" for r in ratios)
    print(
        f"throughput ratio: {ratio:.1%} of the echo ceiling (rounds: {shown}; target >= {TARGET_RATIO:.0%})"
    )
    print(f"p99 at half the echo rate: {identity.half.p99_ms:.2f} ms (target <= {TARGET_P99_MS:g} ms)")
    print(
        f"counted by the servers: echo answered {counted[0]} calls; "
        f"identity answered {counted[1]} checks, every one allowed"
    )
    met = ratio >= TARGET_RATIO and identity.half.p99_ms <= TARGET_P99_MS
    print("targets met" if met else "TARGET MISSED")
    return 0 if met else 2


def report_metrics(identity: Side, metered: Side, checks: int, scraped: tuple[int, int], load: Load) -> int:
    assert metered.half is not None
    rate, p50, p99 = metered.pooled(load.workdir)
    ratios = [m.rate / i.rate for i, m in zip(identity.full, metered.full, strict=True) if i.rate]
    ratio = statistics.median(ratios)
    print()
    print(f"{'identity, metrics on, full speed':<34}{rate:>9.0f}{p50:>9.2f}{p99:>9.2f}")
    label = f"identity, metrics on, {metered.half.rate:.0f}/s (half)"
    print(f"{label:<34}{metered.half.rate:>9.0f}{metered.half.p50_ms:>9.2f}{metered.half.p99_ms:>9.2f}")
    shown = ", ".join(f"{r:.1%}" for r in ratios)
    print(f"metrics on vs off: {ratio:.1%} of the throughput (rounds: {shown})")
    # At saturation calls/s = cores / CPU per call: the ratio of the CPU costs is the
    # throughput ratio of an idle machine, and holds up when others load this one.
    cpu_ratios = [off / on for off, on in zip(identity.cpu_rounds, metered.cpu_rounds, strict=True) if on]
    cpu_ratio = statistics.median(cpu_ratios)
    print(
        f"server CPU per call: {identity.cpu_us_per_call:.0f} us metrics off, "
        f"{metered.cpu_us_per_call:.0f} us metrics on; per round, off/on = "
        + ", ".join(f"{r:.1%}" for r in cpu_ratios)
    )
    print(
        f"metrics on keeps {cpu_ratio:.1%} of the throughput at saturation (median of the rounds' "
        f"CPU ratios; target >= {TARGET_METRICS_RATIO:.0%})"
    )
    ok, cancelled = scraped
    print(
        f"one scrape counted {ok} CheckPermission calls answered and {cancelled} cancelled "
        f"(in flight when a run stopped); the servers made {checks} decisions"
    )
    # A cancelled call may have been decided before the client went away.
    if not ok <= checks <= ok + cancelled:
        raise SystemExit("the metrics did not count every check")
    met = cpu_ratio >= TARGET_METRICS_RATIO
    print("metrics target met" if met else "METRICS TARGET MISSED")
    return 0 if met else 2


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 2, help="server processes (default: cores)"
    )
    parser.add_argument("--seconds", type=float, default=8, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating full-speed rounds")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up run of each server")
    parser.add_argument("--clients", type=int, default=16, help="h2load connections")
    parser.add_argument("--streams", type=int, default=16, help="h2load concurrent streams per connection")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("IDENTITY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL URL allowed to create databases",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("IDENTITY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    parser.add_argument(
        "--metrics", action="store_true", help="also measure identity serve with the metrics listener on"
    )
    args = parser.parse_args()

    binary = ensure_h2load()
    busy = cpu_busy()
    if busy > 0.25:
        print(f"warning: the CPUs are {busy:.0%} busy before we start; the figures will be noisy", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="identity-bench-"))
    with scratch_database(args.admin_url, args.keep) as database_url:
        upgrade(database_url)
        settings = Settings(
            database_url=database_url,
            redis_url=args.redis_url,
            redis_prefix=f"identity-bench-seed-{os.getpid()}:",
            secret_key=Secret(env_secret()),
            bcrypt_rounds=4,
        )
        user_id, key = asyncio.run(seed(settings))
        body = workdir / "request.bin"
        request = rbac_pb2.CheckPermissionRequest(
            subject=rbac_pb2.Subject(user_id=user_id), permission=PERMISSION
        )
        body.write_bytes(grpc_frame(request.SerializeToString()))
        headers = ["content-type: application/grpc", "te: trailers", f"authorization: Bearer {key}"]
        load = Load(binary, body, headers, args.seconds, args.clients, args.streams, workdir)
        print(f"starting {args.processes} echo and {args.processes} identity serve processes ...", flush=True)
        echo = start_echo(args.processes, workdir)
        identity = start_identity(args.processes, workdir, database_url, args.redis_url)
        identities = [identity]
        if args.metrics:
            identities.append(
                start_identity(args.processes, workdir, database_url, args.redis_url, metrics=True)
            )
        scraped = (0, 0)
        try:
            wait_serving([*echo.processes, *(p for side in identities for p in side.processes)])

            def verify(side: Side) -> int:
                return verify_answers(f"127.0.0.1:{side.port}", user_id, key)

            for side in identities:
                side.sent += verify(side)
            print(f"measuring ({args.rounds} rounds) ...", flush=True)
            benchmark(load, echo, identities, args.rounds, args.warmup, verify)
            if args.metrics:
                # Each worker adds its call tallies to the shared files once a second.
                time.sleep(1.5)
                scraped = scraped_checks(identities[1])
        finally:
            for process in (*echo.processes, *(p for side in identities for p in side.processes)):
                process.stop()
        counted = (echo_calls(echo), identity_checks(identity, workdir))
        metered_checks = identity_checks(identities[1], workdir) if args.metrics else 0
    status = report(echo, identity, counted, load, args.rounds)
    if args.metrics:
        status = max(status, report_metrics(identity, identities[1], metered_checks, scraped, load))
    if args.keep:
        print(f"logs in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
