"""The website edge through a real Envoy: client addresses only from the proxy,
cross-site requests refused, every gateway error as JSON that quotes nothing of the
request, one gateway per port, and request ids from the browser to the server's logs."""

from __future__ import annotations

import http.client as http_client
import json
import re
import select
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from identity.gateway import GatewayConfig, default_descriptor_path, envoy_command, find_envoy, render_config
from identity.v1 import auth_pb2, auth_pb2_grpc, rbac_pb2, rbac_pb2_grpc
from tests.e2e.conftest import (
    BIN,
    GATEWAY_SOURCE,
    WEBSITE_ORIGIN,
    Gateway,
    ServerProcess,
    error_reason,
    http,
    identity_cli,
    start_gateway,
    start_server_process,
    wait_for,
)
from tests.support import STRONG_PASSWORD, failure, new_login

MARKER = "sk_EchoMarker7Q"  # looks like a service key; must never come back
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def raw(
    gateway: Gateway, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(gateway.base_url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, error.read(), {k.lower(): v for k, v in error.headers.items()}


def login_history_ips(services, login: str):  # type: ignore[no-untyped-def]
    async def query() -> list[str | None]:
        async with services.db.reader() as uow:
            cur = await uow.conn.execute(
                """SELECT host(h.ip) AS ip FROM login_history h JOIN users u ON u.id = h.user_id
                   WHERE u.login = %s ORDER BY h.login_at""",
                (login,),
            )
            return [row["ip"] for row in await cur.fetchall()]

    return query()


# --- 2. client addresses ------------------------------------------------------


@pytest.fixture(scope="module")
def throttled(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, Gateway]]:
    """A server allowing 3 logins per address, trusting only the gateway's source address."""
    log_dir = tmp_path_factory.mktemp("throttled")
    server = start_server_process(
        database_url,
        log_dir,
        IDENTITY_TRUSTED_PROXIES=f"{GATEWAY_SOURCE}/32",
        IDENTITY_LOGIN_ATTEMPTS_PER_IP="3",
    )
    gateway = start_gateway(server.address, log_dir, "--upstream-source", GATEWAY_SOURCE)
    yield server, gateway
    gateway.stop()
    server.stop()


def test_a_direct_caller_cannot_escape_the_address_throttle_with_a_forged_header(throttled) -> None:
    server, _ = throttled
    with grpc.insecure_channel(server.address) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        codes = []
        for n in range(5):
            forged = (("x-forwarded-for", f"203.0.113.{n + 1}"),)
            try:
                stub.Login(
                    auth_pb2.LoginRequest(login=new_login(), password="not the password"), metadata=forged
                )
            except grpc.RpcError as error:
                codes.append(failure(error).reason)
    # Every attempt counted against 127.0.0.1, whatever the header said.
    assert codes[:3] == ["INVALID_CREDENTIALS"] * 3
    assert codes[3:] == ["RATE_LIMITED", "RATE_LIMITED"]


async def test_the_proxy_is_believed_and_a_direct_caller_is_not(gateway, served, services) -> None:
    login = new_login("xff")
    http("POST", gateway.base_url + "/v1/auth/register", {"login": login, "password": STRONG_PASSWORD})
    body = {"login": login, "password": STRONG_PASSWORD}
    assert (
        http("POST", gateway.base_url + "/v1/auth/login", body, {"x-forwarded-for": "203.0.113.7"})[0] == 200
    )
    with grpc.insecure_channel(served.address) as channel:
        auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(login=login, password=STRONG_PASSWORD),
            metadata=(("x-forwarded-for", "203.0.113.8"),),
        )
    through_gateway, direct = await login_history_ips(services, login)
    # Through Envoy: the address Envoy saw for this client (on some sandboxes a loopback
    # client shows up with a non-loopback address), never the gateway's own source
    # address, which is what the server would record had it ignored x-forwarded-for.
    assert through_gateway not in {None, GATEWAY_SOURCE, "203.0.113.7"}
    # Directly: the TCP peer, the forged header ignored.
    assert direct == "127.0.0.1"


# --- 3. cross-site requests ------------------------------------------------------


def test_a_cross_site_simple_post_is_refused_and_does_nothing(gateway) -> None:
    login = new_login("csrf")
    body = json.dumps({"login": login, "password": STRONG_PASSWORD}).encode()
    status, answer, _ = raw(
        gateway,
        "POST",
        "/v1/auth/register",
        body,
        {"origin": "https://evil.example", "content-type": "text/plain;charset=UTF-8"},
    )
    assert status == 403
    assert error_reason(json.loads(answer)) == "ORIGIN_NOT_ALLOWED"
    # Not even a JSON body from a foreign origin.
    json_headers = {"origin": "https://evil.example", "content-type": "application/json"}
    assert raw(gateway, "POST", "/v1/auth/register", body, json_headers)[0] == 403
    assert raw(gateway, "POST", "/v1/auth/register", body, {**json_headers, "origin": "null"})[0] == 403
    # The account was never created: registering it now succeeds.
    status, created, _ = http(
        "POST", gateway.base_url + "/v1/auth/register", {"login": login, "password": STRONG_PASSWORD}
    )
    assert status == 200, created


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_a_body_that_is_not_json_is_refused(gateway, content_type: str | None) -> None:
    login = new_login("form")
    headers = {"origin": WEBSITE_ORIGIN}
    if content_type is not None:
        headers["content-type"] = content_type
    body = json.dumps({"login": login, "password": STRONG_PASSWORD}).encode()
    status, answer, got = raw(gateway, "POST", "/v1/auth/register", body, headers)
    assert status == 415
    assert error_reason(json.loads(answer)) == "UNSUPPORTED_MEDIA_TYPE"
    # The allowed page can read why.
    assert got.get("access-control-allow-origin") == WEBSITE_ORIGIN
    assert (
        http("POST", gateway.base_url + "/v1/auth/register", {"login": login, "password": STRONG_PASSWORD})[0]
        == 200
    )


def test_json_from_the_allowed_origin_and_from_the_gateways_own_origin_is_served(gateway) -> None:
    for origin in (WEBSITE_ORIGIN, gateway.base_url):
        body = json.dumps({"login": new_login("ok"), "password": STRONG_PASSWORD}).encode()
        headers = {"origin": origin, "content-type": "application/json; charset=utf-8"}
        status, answer, _ = raw(gateway, "POST", "/v1/auth/register", body, headers)
        assert status == 200, answer


# --- 4. errors as JSON, quoting nothing ------------------------------------------


def _bad_requests() -> list[tuple[str, str, str, bytes | None, dict[str, str], int, str]]:
    json_type = {"content-type": "application/json"}
    return [
        ("unknown path", "GET", f"/v1/{MARKER}/x?token={MARKER}", None, {}, 404, "ROUTE_NOT_FOUND"),
        (
            "unknown method on a known path",
            "GET",
            f"/v1/auth/login?t={MARKER}",
            None,
            {},
            404,
            "ROUTE_NOT_FOUND",
        ),
        ("unknown query parameter", "GET", f"/v1/auth/jwks?{MARKER}=1", None, {}, 400, "MALFORMED_REQUEST"),
        (
            "malformed JSON",
            "POST",
            "/v1/auth/login",
            f'{{"login": "{MARKER}'.encode(),
            json_type,
            400,
            "MALFORMED_REQUEST",
        ),
        (
            "wrong type",
            "POST",
            "/v1/auth/login",
            f'{{"login": ["{MARKER}"]}}'.encode(),
            json_type,
            400,
            "MALFORMED_REQUEST",
        ),
        (
            "bad timestamp",
            "GET",
            f"/v1/account/login-history?start_time={MARKER}",
            None,
            {"authorization": f"Bearer {MARKER}"},
            400,
            "MALFORMED_REQUEST",
        ),
        (
            "not JSON",
            "POST",
            "/v1/auth/login",
            MARKER.encode(),
            {"content-type": "text/plain"},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "foreign origin",
            "GET",
            "/v1/auth/jwks",
            None,
            {"origin": f"https://{MARKER.lower()}.example"},
            403,
            "ORIGIN_NOT_ALLOWED",
        ),
    ]


@pytest.mark.parametrize(
    ("what", "method", "path", "body", "headers", "status", "reason"),
    _bad_requests(),
    ids=[c[0] for c in _bad_requests()],
)
def test_every_gateway_error_is_a_json_status_that_quotes_nothing(
    gateway, what, method, path, body, headers, status, reason
) -> None:
    got_status, answer, got = raw(gateway, method, path, body, headers)
    assert got_status == status, answer[:300]
    assert got["content-type"] == "application/json"
    parsed = json.loads(answer)
    assert set(parsed) == {"code", "message", "details"}
    assert isinstance(parsed["code"], int) and parsed["code"] not in (0, 8)  # never OK, never "retry later"
    assert error_reason(parsed) == reason
    assert parsed["details"][0]["domain"] == "identity.v1"
    assert MARKER.lower() not in answer.decode().lower()
    assert not any(MARKER.lower() in value.lower() for value in got.values())
    assert REQUEST_ID.match(got["x-request-id"])


def test_a_10_mb_body_is_refused_as_too_large_not_as_retry_later(gateway) -> None:
    host, port = gateway.base_url.removeprefix("http://").split(":")
    size = 10_000_000
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"POST /v1/auth/login HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
            f"content-length: {size}\r\n\r\n".encode()
        )
        sock.sendall(b'{"login": "' + MARKER.encode())
        sent, chunk = 0, b"a" * 65536
        # Envoy answers once the limit is passed; stop sending then so that the
        # answer is read rather than lost to a reset.
        while sent < size and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(chunk)
            except OSError:
                break
            sent += len(chunk)
        response = http_client.HTTPResponse(sock)
        response.begin()
        answer = response.read()
    assert response.status == 413
    assert response.getheader("content-type") == "application/json"
    assert error_reason(json.loads(answer)) == "REQUEST_TOO_LARGE"
    assert MARKER.lower() not in answer.decode().lower()


# --- 5. one gateway per port -----------------------------------------------------------


def test_a_second_gateway_on_a_taken_port_fails_at_once(gateway, served, tmp_path: Path) -> None:
    port = gateway.base_url.rsplit(":", 1)[1]
    second = subprocess.run(
        [
            str(BIN / "identity"),
            "gateway",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            served.address,
            "--cors-origin",
            "https://other.example",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode != 0
    assert f"127.0.0.1:{port}" in second.stderr and "in use" in second.stderr.lower()
    # Envoy itself (past the CLI's check) refuses to share the listener's port too.
    host_port = gateway.base_url.removeprefix("http://")
    cfg = GatewayConfig(
        listen_host="127.0.0.1",
        listen_port=int(port),
        upstream_host="127.0.0.1",
        upstream_port=served.port,
        descriptor_path=default_descriptor_path(),
        cors_origins=("https://other.example",),
    )
    config_path = tmp_path / "envoy.yaml"
    config_path.write_text(render_config(cfg))
    envoy = subprocess.run(
        envoy_command(find_envoy(), config_path), capture_output=True, text=True, timeout=60
    )
    assert envoy.returncode != 0
    # The first gateway is alone on its port: every preflight gets its own answer.
    preflight = {"origin": "https://other.example", "access-control-request-method": "POST"}
    for _ in range(8):
        _, _, headers = http("OPTIONS", f"http://{host_port}/v1/auth/login", None, preflight)
        assert "access-control-allow-origin" not in headers


# --- 6. request ids ------------------------------------------------------------------


def _logged(server: ServerProcess, request_id: str) -> bool:
    """Whether a log line of the server carries ``request_id`` (waiting a little: the
    line of a failed call may be written just after its status went out)."""

    def seen() -> bool:
        return any(line.get("request_id") == request_id for line in server.log_lines())

    try:
        wait_for(seen, f"a log line with request id {request_id}", timeout=5)
    except TimeoutError:
        return False
    return True


def _failing_register(gateway: Gateway, headers: dict[str, str]) -> dict[str, str]:
    status, _, got = http(
        "POST", gateway.base_url + "/v1/auth/register", {"login": new_login(), "password": "short"}, headers
    )
    assert status == 400
    return got


def _gateway_lines(gateway: Gateway, request_id: str) -> list[dict[str, Any]]:
    """The gateway's access log lines for ``request_id`` (flushed within a second)."""
    assert gateway.log_path is not None
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found.clear()
        for raw_line in gateway.log_path.read_text().splitlines():
            if raw_line.startswith("{") and json.loads(raw_line).get("request_id") == request_id:
                found.append(json.loads(raw_line))
        return bool(found)

    wait_for(seen, f"the gateway's log line for {request_id}", timeout=10)
    return found


def test_a_well_formed_request_id_is_kept_end_to_end(gateway, served) -> None:
    got = _failing_register(gateway, {"x-request-id": "support-case.4711"})
    assert got["x-request-id"] == "support-case.4711"
    assert _logged(served, "support-case.4711")
    [line] = _gateway_lines(gateway, "support-case.4711")
    assert (line["method"], line["path"], line["status"]) == ("POST", "/v1/auth/register", 400)


def test_the_gateway_logs_its_own_refusals_by_request_id_without_the_query(gateway) -> None:
    headers = {"x-request-id": "support-case.4712", "content-type": "text/plain"}
    in_query = "sk_QueryOnlyMarker9Z"
    status, _, got = raw(gateway, "POST", f"/v1/auth/login?hint={in_query}", b"{}", headers)
    assert status == 415 and got["x-request-id"] == "support-case.4712"
    [line] = _gateway_lines(gateway, "support-case.4712")
    assert (line["path"], line["status"]) == ("/v1/auth/login", 415)
    assert in_query not in gateway.log_path.read_text()  # type: ignore[union-attr]


@pytest.mark.parametrize("sent", [None, "has spaces and <tags>", "x" * 65])
def test_otherwise_a_new_id_is_made_and_both_ends_agree(gateway, served, sent: str | None) -> None:
    got = _failing_register(gateway, {} if sent is None else {"x-request-id": sent})
    made = got["x-request-id"]
    assert REQUEST_ID.match(made) and made != sent
    assert _logged(served, made)


def test_direct_grpc_answers_carry_the_request_id(served) -> None:
    with grpc.insecure_channel(served.address) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        _, call = stub.GetJwks.with_call(auth_pb2.GetJwksRequest(), metadata=(("x-request-id", "ops-1"),))
        assert ("x-request-id", "ops-1") in call.trailing_metadata()
        _, call = stub.GetJwks.with_call(auth_pb2.GetJwksRequest())
        made = dict(call.trailing_metadata())["x-request-id"]
        assert REQUEST_ID.match(made)
        # Errors too, with the status.
        with pytest.raises(grpc.RpcError) as failed:
            stub.Register(
                auth_pb2.RegisterRequest(login=new_login(), password="short"),
                metadata=(("x-request-id", "ops-2"),),
            )
        assert ("x-request-id", "ops-2") in failed.value.trailing_metadata()

    assert _logged(served, "ops-2")


def test_permission_checks_carry_the_request_id_in_trailing_metadata(served, database_url) -> None:
    key = identity_cli(database_url, "service-keys", "create", new_login("peer")).strip().split()[-1]
    assert key.startswith("sk_")
    with grpc.insecure_channel(served.address) as channel:
        stub = rbac_pb2_grpc.RbacServiceStub(channel)
        request = rbac_pb2.CheckPermissionRequest(
            subject=rbac_pb2.Subject(user_id="00000000-0000-0000-0000-000000000000"), permission="a.b"
        )
        # Refused (no credential): the id is in the status's trailers.
        with pytest.raises(grpc.RpcError) as failed:
            stub.CheckPermission(request, metadata=(("x-request-id", "peer-1"),))
        assert failure(failed.value).code == grpc.StatusCode.UNAUTHENTICATED
        assert ("x-request-id", "peer-1") in failed.value.trailing_metadata()
        assert _logged(served, "peer-1")
        answered = (("authorization", f"Bearer {key}"), ("x-request-id", "peer-2"))
        reply, call = stub.CheckPermission.with_call(request, metadata=answered)
        assert reply.reason == rbac_pb2.DECISION_REASON_USER_UNKNOWN
        assert ("x-request-id", "peer-2") in call.trailing_metadata()
