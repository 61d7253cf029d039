#!/usr/bin/env python3
"""`make bench`: the service against its ceilings, measured in the same run.

With PostgreSQL and Redis on 127.0.0.1 as for the tests, in one run it:

1. creates a throw-away database, migrates it, and seeds: a user holding a role that
   carries `catalog.films.read` plus a service key (checks); a user whose password is
   hashed at the server's bcrypt cost (logins); sessions for ValidateToken and for
   refresh chains;
2. starts `identity serve --workers N` (the supervisor; N = cores) and N bare grpc.aio
   echo processes sharing a port (scripts/bench/echo_server.py);
3. measures, in alternating rounds (ceiling, identity, ceiling, ...; drift in the
   machine's speed hits both alike; a ratio is the median of the rounds'):
   - CheckPermission and ValidateToken with h2load against the echo ceiling;
   - Login with h2load at 8 and at 32 calls in flight, against the bcrypt bound
     (cores / the time of one hash at the server's cost, timed here);
   - Refresh with chains of rotations (scripts/bench/refresh_load.py: h2load repeats
     one body and a refresh token works once) against bare PyJWT RS256 signing in N
     processes;
   - the resident memory of every worker at the end;
4. checks outcomes on the server side: every worker logs its calls by method and outcome
   when it stops (h2load counts an HTTP 200 carrying a gRPC error as a success), and
   reports how late PostgreSQL answered a probe from outside during the run (a call that
   needed it while it answered later than the servers' bound failed closed);
5. prints a table, writes JSON (--json), and exits 0 when every target is met, 2 when
   one is missed, 1 when the answers are wrong.

Targets (2 cores, 2 workers): Refresh >= 2000/s; Login >= 0.9 of the bcrypt bound at
both concurrencies; CheckPermission >= 0.85 of the echo ceiling with the same number of
processes; resident memory < 120 MB per worker. ValidateToken is reported, not judged.
The figures are only as quiet as the machine: run it on an otherwise idle one."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_permission as cp

from identity.config import Secret, Settings
from identity.container import build_services
from identity.domain.models import ClientInfo, IssuedTokens
from identity.logging import configure_logging
from identity.services.rbac import Actor
from identity.store.migrate import upgrade
from identity.v1 import auth_pb2, rbac_pb2

PASSWORD = "bench password 1234"
UNLIMITED = str(10**9)
RPC = "/identity.v1.{}"


@dataclass
class Target:
    name: str
    unit: str
    identity: float
    ceiling: float | None
    rounds: list[dict[str, float]]
    target: float | None  # a ratio when ceiling-relative, else an absolute floor or cap
    kind: str  # "ratio", "at_least", "below", "report"
    notes: str = ""
    met: bool = field(init=False)

    def __post_init__(self) -> None:
        value = self.ratio if self.kind == "ratio" else self.identity
        if self.target is None or value is None:
            self.met = True
        elif self.kind == "below":
            self.met = value < self.target
        else:
            self.met = value >= self.target

    @property
    def ratio(self) -> float | None:
        if not self.ceiling:
            return None
        ratios = [r["identity"] / r["ceiling"] for r in self.rounds if r.get("ceiling")]
        return statistics.median(ratios) if ratios else self.identity / self.ceiling


# -- seed ---------------------------------------------------------------------------------


@dataclass
class Seed:
    check_user: str
    service_key: str
    login: str
    access_token: str
    refresh_tokens: list[str]


async def seed(settings: Settings, login_rounds: int, chains: int) -> Seed:
    client = ClientInfo(ip="127.0.0.1", user_agent="bench")
    services = await build_services(settings)
    try:
        await services.keys.ensure_ring()
        await services.keys.reload()
        user = await services.auth.register(f"bench-{secrets.token_hex(4)}", PASSWORD, "")
        role = await services.roles.create_role(Actor.OPERATOR, "bench reader", "benchmark", [cp.PERMISSION])
        await services.roles.assign_role(Actor.OPERATOR, str(user.id), str(role.id), None)
        key = await services.service_keys.create("bench")
        logins = [await services.auth.login(user.login, PASSWORD, client) for _ in range(chains + 1)]
        issued = [result for result in logins if isinstance(result, IssuedTokens)]
        assert len(issued) == len(logins), "the benchmark user has no second factor"
    finally:
        await services.close()
    # The login user's hash is made at the server's cost, as a real account's would be.
    slow = await build_services(Settings(**{**asdict_settings(settings), "bcrypt_rounds": login_rounds}))
    try:
        login_user = await slow.auth.register(f"bench-login-{secrets.token_hex(4)}", PASSWORD, "")
    finally:
        await slow.close()
    return Seed(
        str(user.id),
        key.secret,
        login_user.login,
        issued[0].access_token,
        [result.refresh_token for result in issued[1:]],
    )


def asdict_settings(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


# -- ceilings -----------------------------------------------------------------------------


def bcrypt_bound(rounds: int, cores: int, per_thread: int = 2) -> float:
    """Logins/s the cores could hash at the server's cost: cores / the time of one hash,
    timed with one hashing thread per core at once (bcrypt releases the GIL). On an idle
    machine that is cores / one hash's time; on a busy one (or under CFS group scheduling)
    it is what the cores actually give a process now, which one thread alone would not show."""
    hashed = bcrypt.hashpw(b"x" * 44, bcrypt.gensalt(rounds))

    def work() -> None:
        for _ in range(per_thread):
            bcrypt.checkpw(b"x" * 44, hashed)

    threads = [threading.Thread(target=work) for _ in range(cores)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return cores * per_thread / (time.perf_counter() - started)


def _sign_for(seconds: float) -> int:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"iss": "identity", "aud": "cinema", "sub": "u" * 36, "sid": "s" * 36, "jti": "j" * 22}
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        now = int(time.time())
        jwt.encode({**claims, "iat": now, "exp": now + 900}, key, algorithm="RS256", headers={"kid": "k"})
        count += 1
    return count


def signing_rate(processes: int, seconds: float) -> float:
    """Bare PyJWT RS256 signatures per second in `processes` processes at once."""
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        counts = pool.map(_sign_for, [seconds] * processes)
    return sum(counts) / seconds


# -- servers ------------------------------------------------------------------------------


def start_group(workers: int, workdir: Path, database_url: str, redis_url: str, rounds: int) -> cp.Side:
    port = cp.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    env.update(
        IDENTITY_DATABASE_URL=database_url,
        IDENTITY_REDIS_URL=redis_url,
        IDENTITY_REDIS_PREFIX=f"identity-bench-{port}:",
        IDENTITY_GRPC_LISTEN=f"127.0.0.1:{port}",
        IDENTITY_SECRET_KEY=cp.env_secret(),
        IDENTITY_BCRYPT_ROUNDS=str(rounds),
        IDENTITY_LOGIN_ATTEMPTS_PER_ACCOUNT=UNLIMITED,
        IDENTITY_LOGIN_ATTEMPTS_PER_IP=UNLIMITED,
        IDENTITY_LOG_FORMAT="json",
        IDENTITY_LOG_LEVEL="info",
    )
    command = [str(cp.BIN / "identity"), "serve", "--workers", str(workers)]
    return cp.Side("identity", port, [cp.start(command, env, workdir / "identity.log")], [])


def wait_ready(group: cp.Side, echo: cp.Side, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    supervisor = group.processes[0]
    while time.monotonic() < deadline:
        for process in (supervisor, *echo.processes):
            if process.popen.poll() is not None:
                raise SystemExit(f"a server exited:\n{process.log.read_text()[-3000:]}")
        ready = any(e.get("event") == "workers_ready" for e in supervisor.events())
        if ready and all(any(e.get("event") == "serving" for e in p.events()) for p in echo.processes):
            return
        time.sleep(0.1)
    raise SystemExit("servers did not start in time")


def worker_memory_mb(supervisor_pid: int) -> dict[int, float]:
    children = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text().split()
    out = {}
    for pid in map(int, children):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out[pid] = int(line.split()[1]) / 1024
    return out


def server_outcomes(group: cp.Side) -> tuple[Counter[str], int, int]:
    """(calls by method:outcome, checks, allowed), summed over every worker."""
    outcomes: Counter[str] = Counter()
    checks = allowed = 0
    for event in group.processes[0].events():
        if event.get("event") == "rpc_totals":
            outcomes.update({str(k): int(v) for k, v in dict(event["outcomes"]).items()})  # type: ignore[call-overload]
        elif event.get("event") == "authz_totals":
            checks += int(str(event["checks"]))
            allowed += int(str(event["allowed"]))
    return outcomes, checks, allowed


# -- scenarios ----------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    binary: str
    workdir: Path
    echo: cp.Side
    group: cp.Side
    seed: Seed
    sent: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)

    def h2load(
        self, port: int, method: str, body: bytes, headers: list[str], **kw: Any
    ) -> tuple[int, int, float]:
        path = self.workdir / f"{method.replace('/', '-')}.bin"
        path.write_bytes(cp.grpc_frame(body))
        url = f"http://127.0.0.1:{port}{RPC.format(method)}"
        base = ["content-type: application/grpc", "te: trailers"]
        return cp.h2load(self.binary, url, path, base + headers, **kw)

    def versus_echo(self, name: str, method: str, body: bytes, headers: list[str]) -> list[dict[str, float]]:
        seconds, clients, streams = self.args.seconds, self.args.clients, self.args.streams
        for port in (self.echo.port, self.group.port):  # warm-up
            self.count(
                port,
                method,
                self.h2load(port, method, body, headers, seconds=2, clients=clients, streams=streams),
            )
        rounds = []
        for _ in range(self.args.rounds):
            measured = {}
            for label, port in (("ceiling", self.echo.port), ("identity", self.group.port)):
                done, _, elapsed = self.h2load(
                    port, method, body, headers, seconds=seconds, clients=clients, streams=streams
                )
                self.count(port, method, (done, 0, elapsed))
                measured[label] = done / elapsed
            rounds.append(measured)
            print(
                f"  {name}: identity {measured['identity']:.0f}/s, echo {measured['ceiling']:.0f}/s",
                flush=True,
            )
        return rounds

    def count(self, port: int, method: str, result: tuple[int, int, float]) -> None:
        if port == self.group.port:
            self.sent[method] += result[0]

    def check(self) -> Target:
        request = rbac_pb2.CheckPermissionRequest(
            subject=rbac_pb2.Subject(user_id=self.seed.check_user), permission=cp.PERMISSION
        )
        headers = [f"authorization: Bearer {self.seed.service_key}"]
        rounds = self.versus_echo(
            "CheckPermission", "RbacService/CheckPermission", request.SerializeToString(), headers
        )
        return Target(
            "CheckPermission",
            "calls/s",
            statistics.median(r["identity"] for r in rounds),
            statistics.median(r["ceiling"] for r in rounds),
            rounds,
            0.85,
            "ratio",
            "echo ceiling: the same number of bare grpc.aio processes",
        )

    def validate(self) -> Target:
        request = auth_pb2.ValidateTokenRequest(access_token=self.seed.access_token)
        rounds = self.versus_echo(
            "ValidateToken", "AuthService/ValidateToken", request.SerializeToString(), []
        )
        return Target(
            "ValidateToken",
            "calls/s",
            statistics.median(r["identity"] for r in rounds),
            statistics.median(r["ceiling"] for r in rounds),
            rounds,
            None,
            "report",
            "one PostgreSQL read of the session per call",
        )

    def login(self, concurrency: int) -> Target:
        request = auth_pb2.LoginRequest(login=self.seed.login, password=PASSWORD).SerializeToString()
        cores = os.cpu_count() or 1
        rounds = []
        for _ in range(self.args.login_rounds):
            bound = bcrypt_bound(self.args.bcrypt_rounds, cores)
            done, _, elapsed = self.h2load(
                self.group.port,
                "AuthService/Login",
                request,
                [],
                seconds=self.args.login_seconds,
                clients=concurrency,
                streams=1,
            )
            self.sent["AuthService/Login"] += done
            rounds.append({"identity": done / elapsed, "ceiling": bound, "hash_ms": cores / bound * 1000})
            print(
                f"  Login c={concurrency}: {done / elapsed:.2f}/s, bound {bound:.2f}/s",
                flush=True,
            )
        return Target(
            f"Login, {concurrency} in flight",
            "logins/s",
            statistics.median(r["identity"] for r in rounds),
            statistics.median(r["ceiling"] for r in rounds),
            rounds,
            0.9,
            "ratio",
            f"bcrypt bound: {cores} cores / one hash at cost {self.args.bcrypt_rounds}",
        )

    def refresh(self) -> Target:
        tokens = self.workdir / "refresh-tokens.json"
        tokens.write_text(json.dumps(self.seed.refresh_tokens))
        workers = self.args.workers
        rounds = []
        for index in range(self.args.rounds + 1):  # the first is a warm-up
            ceiling = signing_rate(workers, self.args.sign_seconds)
            result = subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).with_name("refresh_load.py")),
                    "--address",
                    f"127.0.0.1:{self.group.port}",
                    "--tokens",
                    str(tokens),
                    "--seconds",
                    str(self.args.seconds),
                    "--connections",
                    str(self.args.clients),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise SystemExit(f"refresh load failed:\n{result.stderr[-3000:]}")
            load = json.loads(result.stdout.strip().splitlines()[-1])
            if load["failures"]:
                # Kept, not fatal: the verdict says so, and the other figures still count.
                self.failures.update(load["failures"])
            self.sent["AuthService/Refresh"] += load["succeeded"]
            rate = load["succeeded"] / load["seconds"]
            if index == 0:
                continue
            client_cores = load["client_cpu_seconds"] / load["seconds"]
            rounds.append(
                {
                    "identity": rate,
                    "ceiling": ceiling,
                    "client_cores": client_cores,
                    "p50_ms": load["p50_ms"],
                    "p99_ms": load["p99_ms"],
                }
            )
            print(
                f"  Refresh: {rate:.0f}/s (client used {client_cores:.2f} cores), signing {ceiling:.0f}/s",
                flush=True,
            )
        return Target(
            "Refresh",
            "calls/s",
            statistics.median(r["identity"] for r in rounds),
            statistics.median(r["ceiling"] for r in rounds),
            rounds,
            float(self.args.refresh_target),
            "at_least",
            f"ceiling: bare PyJWT RS256 signing in {workers} processes; "
            "the Python load generator shares the cores",
        )


def verify(bench: Bench) -> list[str]:
    """Server-side outcomes against what the clients completed."""
    outcomes, checks, allowed = server_outcomes(bench.group)
    problems = []
    if bench.failures:
        problems.append(f"Refresh calls that failed at the client: {dict(bench.failures)}")
    failed = {k: v for k, v in outcomes.items() if not k.endswith(":OK")}
    if failed:
        problems.append(f"calls that failed on the server: {failed}")
    for method, sent in bench.sent.items():
        answered = outcomes.get(f"{method.rsplit('/', 1)[1]}:OK", 0)
        if answered < sent:
            problems.append(f"{method}: clients completed {sent}, servers answered {answered} OK")
    if checks != allowed or checks < bench.sent["RbacService/CheckPermission"]:
        problems.append(f"CheckPermission: {checks} checks, {allowed} allowed")
    return problems


class PostgresWatch:
    """A fresh connection and `SELECT 1` every quarter second from outside the servers, for
    the whole run: how late PostgreSQL answers while the machine is saturated. A call that
    needs PostgreSQL while it answers later than the server's bound fails closed
    (BACKEND_UNAVAILABLE), so a failed call is read beside this."""

    def __init__(self, url: str, interval: float = 0.25) -> None:
        self._url = url
        self._interval = interval
        self._stop = threading.Event()
        self.seconds: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.interval_text = f"{interval:g} s"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()

    def _run(self) -> None:
        import psycopg

        while not self._stop.wait(self._interval):
            started = time.perf_counter()
            try:
                with psycopg.connect(self._url, connect_timeout=30) as conn:
                    conn.execute("SELECT 1")
            except psycopg.Error:
                pass  # counted by its time: 30 s
            self.seconds.append(time.perf_counter() - started)

    def summary(self) -> dict[str, float]:
        values = self.seconds or [0.0]
        return {
            "probes": len(self.seconds),
            "slowest_seconds": max(values),
            "over_1s": sum(v > 1 for v in values),
            "over_3s": sum(v > 3 for v in values),
        }


# -- report -------------------------------------------------------------------------------


def number(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def report(targets: list[Target], path: Path, meta: dict[str, Any]) -> bool:
    print()
    print(f"{'':<26}{'identity':>10}{'ceiling':>10}{'ratio':>8}  {'target':<10} rounds (identity/ceiling)")
    for t in targets:
        ratio = "" if t.ratio is None else f"{t.ratio:.2f}"
        ceiling = "" if t.ceiling is None else number(t.ceiling)
        value = number(t.identity)
        goal = "-"
        if t.target is not None:
            goal = {"ratio": f">= {t.target}x", "at_least": f">= {t.target:g}", "below": f"< {t.target:g}"}[
                t.kind
            ]
        shown = ", ".join(
            f"{number(r['identity'])}/{number(r['ceiling'])}" if "ceiling" in r else number(r["identity"])
            for r in t.rounds
        )
        mark = "" if t.met else "  MISSED"
        print(f"{t.name:<26}{value:>10}{ceiling:>10}{ratio:>8}  {goal:<10} {shown}{mark}")
    met = all(t.met for t in targets)
    print("every target met" if met else "TARGET MISSED")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**meta, "met": met, "results": [{**asdict(t), "ratio": t.ratio} for t in targets]}
    path.write_text(json.dumps(payload, indent=2))
    print(f"results in {path}")
    return met


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cores = os.cpu_count() or 2
    parser.add_argument(
        "--workers", type=int, default=cores, help="identity workers and echo processes (cores)"
    )
    parser.add_argument("--seconds", type=float, default=6, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--login-seconds", type=float, default=10)
    parser.add_argument("--login-rounds", type=int, default=2)
    parser.add_argument("--sign-seconds", type=float, default=2)
    parser.add_argument("--bcrypt-rounds", type=int, default=12, help="the server's bcrypt cost")
    parser.add_argument("--clients", type=int, default=16, help="connections")
    parser.add_argument("--streams", type=int, default=16, help="concurrent streams per connection (h2load)")
    parser.add_argument("--chains", type=int, default=64, help="concurrent refresh chains")
    parser.add_argument("--refresh-target", type=float, default=2000)
    parser.add_argument(
        "--only", action="append", default=[], help="check, validate, login, refresh (repeatable)"
    )
    parser.add_argument("--json", type=Path, default=Path("build/bench-results.json"))
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("IDENTITY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("IDENTITY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    configure_logging("warning")
    binary = cp.ensure_h2load()
    busy = cp.cpu_busy()
    if busy > 0.25:
        print(f"warning: the CPUs are {busy:.0%} busy before we start; the figures will be noisy", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="identity-bench-"))
    wanted = set(args.only) or {"check", "validate", "login", "refresh"}
    with cp.scratch_database(args.admin_url, args.keep) as database_url:
        upgrade(database_url)
        settings = Settings(
            database_url=database_url,
            redis_url=args.redis_url,
            redis_prefix=f"identity-bench-seed-{os.getpid()}:",
            secret_key=Secret(cp.env_secret()),
            bcrypt_rounds=4,
            login_attempts_per_account=10**9,
            login_attempts_per_ip=10**9,
        )
        seeded = asyncio.run(seed(settings, args.bcrypt_rounds, args.chains))
        print(
            f"starting identity serve --workers {args.workers} and {args.workers} echo processes ...",
            flush=True,
        )
        echo = cp.start_echo(args.workers, workdir)
        group = start_group(args.workers, workdir, database_url, args.redis_url, args.bcrypt_rounds)
        bench = Bench(args, binary, workdir, echo, group, seeded)
        targets: list[Target] = []
        watch = PostgresWatch(args.admin_url)
        try:
            wait_ready(group, echo)
            watch.start()
            if "check" in wanted:
                targets.append(bench.check())
            if "validate" in wanted:
                targets.append(bench.validate())
            if "login" in wanted:
                targets += [bench.login(8), bench.login(32)]
            if "refresh" in wanted:
                targets.append(bench.refresh())
            memory = worker_memory_mb(group.processes[0].popen.pid)
            rss = [{"identity": mb} for mb in memory.values()]
            targets.append(Target("RSS per worker", "MB", max(memory.values()), None, rss, 120, "below"))
        finally:
            watch.stop()
            for process in (*echo.processes, *group.processes):
                process.stop()
        problems = verify(bench)
    meta = {
        "cores": os.cpu_count(),
        "workers": args.workers,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "cpu_busy_before": busy,
        "bcrypt_rounds": args.bcrypt_rounds,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "postgres_answers": watch.summary(),
    }
    met = report(targets, args.json, meta)
    late = watch.summary()
    print(
        f"PostgreSQL, probed from outside every {watch.interval_text}: slowest answer "
        f"{late['slowest_seconds']:.2f} s; {late['over_1s']} of {late['probes']} over 1 s, "
        f"{late['over_3s']} over 3 s"
    )
    if problems:
        print("WRONG ANSWERS:\n  " + "\n  ".join(problems))
        if late["over_3s"]:
            print(
                "  (PostgreSQL answered later than the servers' 3 s bound during the run: calls that\n"
                "   needed it then failed closed, BACKEND_UNAVAILABLE, as designed)"
            )
    if args.keep:
        print(f"logs in {workdir}")
    return 1 if problems else 0 if met else 2


if __name__ == "__main__":
    sys.exit(main())
