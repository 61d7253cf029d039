"""The revocation feed over real processes: two `identity serve` processes sharing one
database and peers running scripts/peer_example.py (identity.peer's TokenVerifier with the
feed, PeerAuthInterceptor, @require_permission). A session ended on one server is refused
by every peer within a second and by the other server on the very next call; a peer that
loses the feed resumes without missing anything, across a server restart; a stale feed
fails closed or falls back to ValidateToken, as each peer chose."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import wrappers_pb2

from identity.v1 import auth_pb2, auth_pb2_grpc
from tests.e2e.conftest import (
    BIN,
    ServerProcess,
    free_port,
    health_status,
    server_env,
    start_server_process,
    wait_for,
)
from tests.support import STRONG_PASSWORD, bearer, failure, new_login

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STALENESS = 3
# The promise for peers: refused within a second of the ending call's return.
PEER_DEADLINE = 1.0


def identity_cli(database_url: str, *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [str(BIN / "identity"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=server_env(database_url, free_port(), IDENTITY_LOG_LEVEL="warning"),
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@dataclass
class Peer:
    process: subprocess.Popen[str]
    port: int
    channel: grpc.Channel

    def call(self, method: str, token: str) -> tuple[grpc.StatusCode, str]:
        stub = self.channel.unary_unary(
            f"/cinema.Catalogue/{method}",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )
        try:
            answer = stub(wrappers_pb2.StringValue(value="film"), metadata=bearer(token), timeout=5)
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
        return grpc.StatusCode.OK, answer.value

    def whoami(self, token: str) -> tuple[grpc.StatusCode, str]:
        return self.call("WhoAmI", token)

    def stop(self) -> None:
        self.channel.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_peer(identity: str, feed: str, service_key: str, on_stale: str, log_dir: Path) -> Peer:
    port = free_port()
    env = {**os.environ, "IDENTITY_PEER_SERVICE_KEY": service_key}
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts/peer_example.py"),
            "--identity",
            identity,
            "--feed",
            feed,
            "--listen",
            f"127.0.0.1:{port}",
            "--staleness",
            str(STALENESS),
            "--on-stale",
            on_stale,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=(log_dir / f"peer-{port}.log").open("w"),
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("listening") and "feed=current" in line, line
    return Peer(process, port, grpc.insecure_channel(f"127.0.0.1:{port}"))


def start_on_port(database_url: str, port: int, log_dir: Path) -> ServerProcess:
    log_path = log_dir / f"identity-{port}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "identity"), "serve"], env=server_env(database_url, port), stdout=log, stderr=log
        )
    wait_for(lambda: health_status(port) == 1, "identity serve to restart")
    return ServerProcess(process, port, log_path)


@dataclass
class Stack:
    database_url: str
    a: ServerProcess
    b: ServerProcess
    auth_a: auth_pb2_grpc.AuthServiceStub
    auth_b: auth_pb2_grpc.AuthServiceStub
    service_key: str
    # Feed from A, fail closed.
    p1: Peer
    # Feed from B, ValidateToken on A while the feed is stale.
    p2: Peer
    # Feed from B, fail closed.
    p3: Peer
    log_dir: Path

    @property
    def peers(self) -> tuple[Peer, ...]:
        return (self.p1, self.p2, self.p3)

    def login(self, login: str, via: auth_pb2_grpc.AuthServiceStub | None = None) -> auth_pb2.LoginResponse:
        return (via or self.auth_a).Login(auth_pb2.LoginRequest(login=login, password=STRONG_PASSWORD))

    def user(self) -> str:
        login = new_login("viewer")
        self.auth_a.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
        return login


@pytest.fixture(scope="module")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("peers")
    a = start_server_process(database_url, log_dir)
    b = start_server_process(database_url, log_dir)
    key = identity_cli(database_url, "service-keys", "create", new_login("catalogue")).strip()
    p1 = start_peer(a.address, a.address, key, "fail_closed", log_dir)
    p2 = start_peer(a.address, b.address, key, "validate", log_dir)
    p3 = start_peer(a.address, b.address, key, "fail_closed", log_dir)
    channels = [grpc.insecure_channel(a.address), grpc.insecure_channel(b.address)]
    stack = Stack(
        database_url,
        a,
        b,
        auth_pb2_grpc.AuthServiceStub(channels[0]),
        auth_pb2_grpc.AuthServiceStub(channels[1]),
        key,
        p1,
        p2,
        p3,
        log_dir,
    )
    yield stack
    for peer in stack.peers:
        peer.stop()
    for channel in channels:
        channel.close()
    stack.a.stop()
    stack.b.stop()


def accepted_everywhere(stack: Stack, token: str) -> None:
    for peer in stack.peers:
        code, _ = peer.whoami(token)
        assert code == grpc.StatusCode.OK
    for auth in (stack.auth_a, stack.auth_b):
        assert auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=token)).valid


def refused_everywhere(stack: Stack, token: str) -> None:
    """Called right after the ending call returned: the other server refuses on the next
    call, every peer within PEER_DEADLINE."""
    returned = time.monotonic()
    for auth in (stack.auth_a, stack.auth_b):
        answer = auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=token))
        assert not answer.valid
    pending = list(stack.peers)
    while pending:
        pending = [p for p in pending if p.whoami(token)[0] != grpc.StatusCode.UNAUTHENTICATED]
        if pending and time.monotonic() - returned > PEER_DEADLINE:
            codes = [p.whoami(token) for p in pending]
            pytest.fail(f"{len(pending)} peer(s) still accept the token {PEER_DEADLINE}s later: {codes}")
        time.sleep(0.01)
    for peer in stack.peers:
        code, details = peer.whoami(token)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "SESSION_REVOKED" in details


def test_logout_on_one_server_is_refused_by_every_peer(stack: Stack) -> None:
    tokens = stack.login(stack.user())
    accepted_everywhere(stack, tokens.access_token)
    stack.auth_a.Logout(auth_pb2.LogoutRequest(), metadata=bearer(tokens.access_token))
    refused_everywhere(stack, tokens.access_token)


def test_logout_others_ends_the_others_only(stack: Stack) -> None:
    login = stack.user()
    kept, ended = stack.login(login), stack.login(login, via=stack.auth_b)
    accepted_everywhere(stack, ended.access_token)
    stack.auth_b.LogoutOtherSessions(
        auth_pb2.LogoutOtherSessionsRequest(), metadata=bearer(kept.access_token)
    )
    refused_everywhere(stack, ended.access_token)
    accepted_everywhere(stack, kept.access_token)


def test_password_change_ends_the_other_sessions(stack: Stack) -> None:
    login = stack.user()
    kept, ended = stack.login(login), stack.login(login)
    stack.auth_a.ChangePassword(
        auth_pb2.ChangePasswordRequest(current_password=STRONG_PASSWORD, new_password=STRONG_PASSWORD + "!"),
        metadata=bearer(kept.access_token),
    )
    refused_everywhere(stack, ended.access_token)
    accepted_everywhere(stack, kept.access_token)


def test_refresh_token_reuse_ends_the_session(stack: Stack) -> None:
    first = stack.login(stack.user())
    second = stack.auth_b.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token))
    accepted_everywhere(stack, second.access_token)
    with pytest.raises(grpc.RpcError) as reused:
        stack.auth_b.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token))
    assert failure(reused.value).reason == "REFRESH_TOKEN_REUSED"
    refused_everywhere(stack, second.access_token)
    refused_everywhere(stack, first.access_token)


def test_account_disable_ends_every_session(stack: Stack) -> None:
    login = stack.user()
    one, two = stack.login(login), stack.login(login, via=stack.auth_b)
    identity_cli(stack.database_url, "users", "disable", "--login", login)
    refused_everywhere(stack, one.access_token)
    refused_everywhere(stack, two.access_token)


def test_require_permission_asks_identity(stack: Stack) -> None:
    login = stack.user()
    tokens = stack.login(login)
    code, _ = stack.p1.call("PublishFilm", tokens.access_token)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    role = new_login("publisher")
    identity_cli(stack.database_url, "roles", "create", role, "-p", "catalog.films.publish")
    identity_cli(stack.database_url, "roles", "grant", "--login", login, "--role", role)
    for peer in stack.peers:
        assert peer.call("PublishFilm", tokens.access_token) == (grpc.StatusCode.OK, "published film")
    assert stack.p1.call("PublishFilm", "not-a-token")[0] == grpc.StatusCode.UNAUTHENTICATED


def test_a_peer_that_loses_the_feed_misses_nothing_across_a_server_restart(stack: Stack) -> None:
    """B stops: the peers following it go stale. Sessions end on A meanwhile. The fail-closed
    peer refuses everything past its staleness bound; the other asks ValidateToken on A.
    B starts again (a new process: its memory comes from PostgreSQL) and both peers resume
    from their cursors: the sessions that ended meanwhile are refused from their own copy."""
    live = stack.login(stack.user())
    before = stack.login(stack.user())
    stack.auth_a.Logout(auth_pb2.LogoutRequest(), metadata=bearer(before.access_token))
    refused_everywhere(stack, before.access_token)

    port = stack.b.port
    stack.b.stop()
    during = stack.login(stack.user())
    stack.auth_a.Logout(auth_pb2.LogoutRequest(), metadata=bearer(during.access_token))
    assert stack.p1.whoami(during.access_token)[0] == grpc.StatusCode.UNAUTHENTICATED

    time.sleep(STALENESS + 1)
    # Fail closed: nothing is accepted, not even a live session's token.
    assert stack.p3.whoami(live.access_token)[0] == grpc.StatusCode.UNAVAILABLE
    # Fall back to ValidateToken: right answers for both.
    assert stack.p2.whoami(live.access_token)[0] == grpc.StatusCode.OK
    code, details = stack.p2.whoami(during.access_token)
    assert code == grpc.StatusCode.UNAUTHENTICATED and "SESSION_REVOKED" in details

    stack.b = start_on_port(stack.database_url, port, stack.log_dir)
    wait_for(lambda: stack.p3.whoami(live.access_token)[0] == grpc.StatusCode.OK, "p3 to hear the feed again")
    for peer in (stack.p2, stack.p3):
        for token in (before.access_token, during.access_token):
            code, details = peer.whoami(token)
            assert code == grpc.StatusCode.UNAUTHENTICATED and "SESSION_REVOKED" in details
    # A peer that starts now gets every session ended within the token lifetime.
    fresh = start_peer(stack.a.address, stack.b.address, stack.service_key, "fail_closed", stack.log_dir)
    try:
        assert fresh.whoami(live.access_token)[0] == grpc.StatusCode.OK
        for token in (before.access_token, during.access_token):
            code, details = fresh.whoami(token)
            assert code == grpc.StatusCode.UNAUTHENTICATED and "SESSION_REVOKED" in details
    finally:
        fresh.stop()


def test_the_feed_needs_a_service_key(stack: Stack) -> None:
    from identity.v1 import peer_pb2, peer_pb2_grpc

    user_token = stack.login(stack.user()).access_token
    with grpc.insecure_channel(stack.a.address) as channel:
        stub = peer_pb2_grpc.PeerServiceStub(channel)
        for metadata, code in (
            ((), grpc.StatusCode.UNAUTHENTICATED),
            (bearer("sk_" + "x" * 40), grpc.StatusCode.UNAUTHENTICATED),
            (bearer(user_token), grpc.StatusCode.PERMISSION_DENIED),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                next(
                    iter(
                        stub.WatchSessionRevocations(
                            peer_pb2.WatchSessionRevocationsRequest(), metadata=metadata, timeout=5
                        )
                    )
                )
            assert refused.value.code() == code
        with pytest.raises(grpc.RpcError) as bad_cursor:
            next(
                iter(
                    stub.WatchSessionRevocations(
                        peer_pb2.WatchSessionRevocationsRequest(cursor="abc"),
                        metadata=bearer(stack.service_key),
                        timeout=5,
                    )
                )
            )
        assert bad_cursor.value.code() == grpc.StatusCode.INVALID_ARGUMENT
