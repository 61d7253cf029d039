"""Replicas on several hosts behind one Envoy: three network namespaces, an
`identity serve` in each, one PostgreSQL and one Redis on a fourth host (the root
side of the bridge), and Envoy balancing over the three with gRPC health checks.

The service keeps no state of its own, so whatever one replica does is seen by the
next call on any other: a role revoke, a refresh race, a logout; and a replica that
is taken down (SIGTERM) loses no call the balancer could retry."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from identity.gateway import find_envoy
from identity.store.migrate import upgrade
from identity.v1 import auth_pb2, auth_pb2_grpc, rbac_pb2, rbac_pb2_grpc
from tests.e2e import hosts
from tests.e2e.conftest import BIN, free_port, server_env, wait_for
from tests.rbac_support import new_permission, new_role_name
from tests.support import STRONG_PASSWORD, bearer, failure, new_login

REASON = hosts.unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no network namespaces here: {REASON}")

GRPC_PORT = 50051
SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass
class Replica:
    index: int
    address: str
    log: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Cluster:
    net: hosts.Network
    db: hosts.DatabaseHost
    database_url: str
    envoy_address: str
    workdir: Path
    replicas: list[Replica] = field(default_factory=list)

    def env(self, listen: str) -> dict[str, str]:
        return server_env(
            self.database_url,
            GRPC_PORT,
            IDENTITY_GRPC_LISTEN=listen,
            IDENTITY_REDIS_URL=self.db.redis_url,
            IDENTITY_REDIS_PREFIX="identity-hosts:",  # one deployment: one prefix for all
            # Only the balancer (on the bridge, the hosts' gateway address) is believed.
            IDENTITY_TRUSTED_PROXIES=f"{self.net.gateway_ip}/32",
            IDENTITY_LOG_LEVEL="debug",
            # Many of Envoy's health-check intervals (0.25 s), with room for a loaded machine:
            # out of rotation before it stops accepting calls.
            IDENTITY_SHUTDOWN_DELAY_SECONDS="2",
        )

    def start(self, replica: Replica) -> None:
        with replica.log.open("ab") as log:
            replica.process = subprocess.Popen(
                [*self.net.exec_prefix(replica.index), str(BIN / "identity"), "serve"],
                env=self.env(replica.address),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: health(replica.address) == SERVING, f"replica {replica.index} to serve", timeout=60)

    def cli(self, *args: str, stdin: str = "") -> str:
        result = subprocess.run(
            [str(BIN / "identity"), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env(f"127.0.0.1:{free_port()}"), "IDENTITY_LOG_LEVEL": "warning"},
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


def channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def health(address: str) -> int | None:
    try:
        with channel(address) as ch:
            return int(
                health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1).status
            )
    except grpc.RpcError:
        return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("replicas")
    with hosts.network(3) as net, hosts.database_host(net) as db:
        with psycopg.connect(db.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE identity")
        database_url = db.database_url("identity")
        upgrade(database_url)
        envoy_port = free_port()
        config = workdir / "envoy.yaml"
        config.write_text(hosts.envoy_config(envoy_port, [(net.host_ip(i), GRPC_PORT) for i in range(3)]))
        made = Cluster(net, db, database_url, f"127.0.0.1:{envoy_port}", workdir)
        envoy = None
        try:
            for index in range(3):
                replica = Replica(
                    index, f"{net.host_ip(index)}:{GRPC_PORT}", workdir / f"replica-{index}.log"
                )
                made.replicas.append(replica)
                made.start(replica)
            with (workdir / "envoy.log").open("wb") as log:
                envoy = subprocess.Popen(
                    [
                        find_envoy(),
                        "--config-path",
                        str(config),
                        "--log-level",
                        "warn",
                        "--disable-hot-restart",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            wait_for(
                lambda: envoy.poll() is not None or health(made.envoy_address) == SERVING,
                "envoy to reach the replicas",
                timeout=30,
            )
            assert envoy.poll() is None, (workdir / "envoy.log").read_text()[-3000:]
            yield made
        finally:
            if envoy is not None:
                envoy.terminate()
                envoy.wait(timeout=10)
            for replica in made.replicas:
                if replica.process is not None and replica.process.poll() is None:
                    replica.process.send_signal(signal.SIGTERM)
                    try:
                        replica.process.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        replica.process.kill()
                        replica.process.wait()


def calls_seen(replica: Replica, rpc: str) -> int:
    return replica.log.read_text(errors="replace").count(f'"rpc": "{rpc}"')


def test_the_balancer_spreads_calls_over_every_host(cluster: Cluster) -> None:
    before = [calls_seen(r, "GetJwks") for r in cluster.replicas]
    with channel(cluster.envoy_address) as ch:
        stub = auth_pb2_grpc.AuthServiceStub(ch)
        for _ in range(30):
            assert stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=5).keys
    after = [calls_seen(r, "GetJwks") for r in cluster.replicas]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    # Every replica reads its signing keys from the one PostgreSQL: one key ring for all.
    kids = set()
    for replica in cluster.replicas:
        with channel(replica.address) as ch:
            reply = auth_pb2_grpc.AuthServiceStub(ch).GetJwks(auth_pb2.GetJwksRequest(), timeout=5)
            kids.add(tuple(sorted(key.kid for key in reply.keys)))
    assert len(kids) == 1


def test_a_role_revoke_is_seen_by_the_next_check_on_every_replica(cluster: Cluster) -> None:
    root = new_login("root")
    cluster.cli("users", "create-superuser", "--login", root, stdin=STRONG_PASSWORD + "\n")
    key = bearer(cluster.cli("service-keys", "create", new_role_name("peer")).strip())
    permission = new_permission("films")
    with channel(cluster.envoy_address) as ch:
        auth, rbac = auth_pb2_grpc.AuthServiceStub(ch), rbac_pb2_grpc.RbacServiceStub(ch)
        admin = bearer(auth.Login(auth_pb2.LoginRequest(login=root, password=STRONG_PASSWORD)).access_token)
        user_id = auth.Register(auth_pb2.RegisterRequest(login=new_login(), password=STRONG_PASSWORD)).user.id
        role = rbac.CreateRole(
            rbac_pb2.CreateRoleRequest(role=rbac_pb2.Role(name=new_role_name(), permissions=[permission])),
            metadata=admin,
        ).role
        rbac.AssignRole(rbac_pb2.AssignRoleRequest(user_id=user_id, role_id=role.id), metadata=admin)
        check = rbac_pb2.CheckPermissionRequest(
            subject=rbac_pb2.Subject(user_id=user_id), permission=permission
        )
        replicas = [channel(r.address) for r in cluster.replicas]
        try:
            checks = [rbac_pb2_grpc.RbacServiceStub(c).CheckPermission for c in replicas]
            assert [c(check, metadata=key, timeout=5).allowed for c in checks] == [True] * 3
            rbac.RevokeRole(rbac_pb2.RevokeRoleRequest(user_id=user_id, role_id=role.id), metadata=admin)
            answers = [c(check, metadata=key, timeout=5) for c in checks]
        finally:
            for c in replicas:
                c.close()
    assert [a.allowed for a in answers] == [False] * 3
    assert {a.reason for a in answers} == {rbac_pb2.DECISION_REASON_NOT_GRANTED}


def test_a_refresh_race_across_replicas_has_exactly_one_winner(cluster: Cluster) -> None:
    login = new_login("race")
    with channel(cluster.envoy_address) as ch:
        auth = auth_pb2_grpc.AuthServiceStub(ch)
        auth.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
        tokens = auth.Login(auth_pb2.LoginRequest(login=login, password=STRONG_PASSWORD))
    replicas = [channel(r.address) for r in cluster.replicas]
    for c in replicas:
        grpc.channel_ready_future(c).result(timeout=10)
    racers = 12
    barrier = threading.Barrier(racers)
    outcomes: list[str] = [""] * racers

    def race(slot: int) -> None:
        stub = auth_pb2_grpc.AuthServiceStub(replicas[slot % 3])
        barrier.wait()
        try:
            stub.Refresh(auth_pb2.RefreshRequest(refresh_token=tokens.refresh_token), timeout=15)
            outcomes[slot] = "OK"
        except grpc.RpcError as error:
            outcomes[slot] = failure(error).reason or error.code().name

    threads = [threading.Thread(target=race, args=(slot,)) for slot in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for c in replicas:
        c.close()
    counted = Counter(outcomes)
    assert counted["OK"] == 1, counted
    assert set(counted) <= {"OK", "REFRESH_TOKEN_REUSED", "SESSION_REVOKED"}, counted


def test_a_logout_on_one_replica_ends_the_session_on_all(cluster: Cluster) -> None:
    login = new_login("bye")
    replicas = [channel(r.address) for r in cluster.replicas]
    try:
        stubs = [auth_pb2_grpc.AuthServiceStub(c) for c in replicas]
        stubs[0].Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
        tokens = stubs[0].Login(auth_pb2.LoginRequest(login=login, password=STRONG_PASSWORD))
        validate = auth_pb2.ValidateTokenRequest(access_token=tokens.access_token)
        assert [s.ValidateToken(validate, timeout=5).valid for s in stubs] == [True] * 3
        stubs[1].Logout(auth_pb2.LogoutRequest(), metadata=bearer(tokens.access_token), timeout=5)
        after = [s.ValidateToken(validate, timeout=5) for s in stubs]
        with pytest.raises(grpc.RpcError) as refused:
            stubs[2].Refresh(auth_pb2.RefreshRequest(refresh_token=tokens.refresh_token), timeout=5)
    finally:
        for c in replicas:
            c.close()
    assert [a.valid for a in after] == [False] * 3
    assert failure(refused.value).code == grpc.StatusCode.UNAUTHENTICATED


def test_taking_a_replica_down_loses_no_call(cluster: Cluster) -> None:
    key = bearer(cluster.cli("service-keys", "create", new_role_name("peer")).strip())
    login = new_login("steady")
    with channel(cluster.envoy_address) as ch:
        auth = auth_pb2_grpc.AuthServiceStub(ch)
        user_id = auth.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD)).user.id
        access = auth.Login(auth_pb2.LoginRequest(login=login, password=STRONG_PASSWORD)).access_token
    stop = threading.Event()
    results: Counter[str] = Counter()
    lock = threading.Lock()

    def client() -> None:
        with channel(cluster.envoy_address) as ch:
            auth = auth_pb2_grpc.AuthServiceStub(ch)
            rbac = rbac_pb2_grpc.RbacServiceStub(ch)
            check = rbac_pb2.CheckPermissionRequest(
                subject=rbac_pb2.Subject(user_id=user_id), permission="catalog.films.read"
            )
            validate = auth_pb2.ValidateTokenRequest(access_token=access)
            for n in range(5000):  # bounded; the test stops it much sooner
                if stop.is_set():
                    return
                try:
                    if n % 2:
                        rbac.CheckPermission(check, metadata=key, timeout=10)
                    else:
                        assert auth.ValidateToken(validate, timeout=10).valid
                    outcome = "OK"
                except grpc.RpcError as error:
                    outcome = f"{error.code().name}: {error.details()}"
                with lock:
                    results[outcome] += 1

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    victim = cluster.replicas[1]
    assert victim.process is not None
    try:
        time.sleep(1.0)
        served_before = calls_seen(victim, "ValidateToken")
        victim.process.send_signal(signal.SIGTERM)
        assert victim.process.wait(timeout=30) == 0
        time.sleep(1.5)  # calls keep flowing to the two left
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
    assert served_before > 0  # it did take calls before it went
    assert set(results) == {"OK"}, results
    assert results["OK"] > 50
    cluster.start(victim)  # back in the pool for whatever runs next


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
