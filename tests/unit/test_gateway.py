"""The website gateway: rendering the Envoy config, refusing unsafe input, and the
rendered config as the real Envoy sees it (``envoy --mode validate``, and one run
against a stand-in AuthService)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from identity import gateway
from identity.gateway import (
    GatewayConfig,
    check_port_free,
    default_descriptor_path,
    find_envoy,
    parse_host_port,
    render_config,
    validate_config,
)
from identity.gateway_replies import FALLBACK, GATEWAY_ERRORS, NATIVE_GRPC_HEADER, local_reply_config
from identity.v1 import auth_pb2, auth_pb2_grpc, errors_pb2, rbac_pb2, rbac_pb2_grpc

RBAC = "identity.v1.RbacService"


@pytest.fixture(scope="module")
def descriptor() -> Path:
    return default_descriptor_path()


@pytest.fixture
def cfg(descriptor: Path) -> GatewayConfig:
    return GatewayConfig(
        listen_host="127.0.0.1",
        listen_port=8080,
        upstream_host="127.0.0.1",
        upstream_port=50051,
        descriptor_path=descriptor,
    )


def route_prefixes(rendered: str) -> list[str]:
    return [
        json.loads(line.strip()[2:])["match"]["prefix"]
        for line in rendered.splitlines()
        if line.strip().startswith('- {"match"')
    ]


# --- the edge: errors, origins, TLS, the port ------------------------------------


def test_every_gateway_reason_is_an_error_reason_and_in_the_readme() -> None:
    names = set(errors_pb2.ErrorReason.keys())
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = {
        (int(m[1]), m[2]) for m in re.finditer(r"^\| (\d{3}) \| `([A-Z_]+)` \|", readme, flags=re.MULTILINE)
    }
    for error in GATEWAY_ERRORS:
        assert f"ERROR_REASON_{error.reason}" in names
        assert (error.http_status, error.reason) in table
    assert f"ERROR_REASON_{FALLBACK.reason}" in names


def test_local_replies_are_fixed_json_and_leave_native_grpc_alone() -> None:
    config = local_reply_config()
    assert "body_format" not in config  # no rewrite outside the mappers (native gRPC)
    for mapper in config["mappers"]:
        body = mapper["body_format_override"]
        assert body["content_type"] == "application/json"
        # Fixed texts: no command operator (%REQ(...)%, %LOCAL_REPLY_BODY%, ...) can echo the request.
        assert "%" not in json.dumps(body)
        grpc_filter = mapper["filter"]["and_filter"]["filters"][1]["header_filter"]["header"]
        assert grpc_filter == {"name": NATIVE_GRPC_HEADER, "present_match": True, "invert_match": True}


def test_the_listener_never_shares_its_port_and_keeps_request_ids(cfg: GatewayConfig) -> None:
    rendered = render_config(cfg)
    for line in (
        "enable_reuse_port: false",
        "preserve_external_request_id: true",
        "always_set_request_id_in_response: true",
        "max_request_body_size: 65536",
    ):
        assert line in rendered, line


def test_origins_reach_the_edge_filter_lower_cased(cfg: GatewayConfig) -> None:
    rendered = render_config(replace(cfg, cors_origins=("https://WWW.Cinema.example",)))
    assert '[\\"https://www.cinema.example\\"] = true' in rendered


def test_tls_options_render_and_envoy_accepts_them(cfg: GatewayConfig, tmp_path: Path) -> None:
    from tests.certs import new_authority

    ca = new_authority(tmp_path, "unit")
    server = ca.issue(tmp_path, "gw", hosts=("127.0.0.1",))
    client = ca.issue(tmp_path, "gw-client", client=True)
    tls = replace(
        cfg,
        tls_cert_file=server.cert,
        tls_key_file=server.key,
        upstream_ca_file=ca.path,
        upstream_cert_file=client.cert,
        upstream_key_file=client.key,
        upstream_source="127.0.0.2",
    )
    rendered = render_config(tls)
    assert rendered.count("envoy.transport_sockets.tls") == 2
    assert "DownstreamTlsContext" in rendered and "UpstreamTlsContext" in rendered
    assert '"san_type": "IP_ADDRESS", "matcher": {"exact": "127.0.0.1"}' in rendered
    assert '"source_address": {"address": "127.0.0.2"' in rendered
    validate_config(tls)
    plain = render_config(cfg)
    assert "transport_socket" not in plain and "upstream_bind_config" not in plain


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tls_cert_file": Path("/etc/hostname")}, "both a certificate and a key"),
        (
            {"upstream_cert_file": Path("/etc/hostname"), "upstream_key_file": Path("/etc/hostname")},
            "upstream CA",
        ),
        ({"upstream_ca_file": Path("/no/such/ca.pem")}, "no such file"),
        ({"upstream_source": "gateway.local"}, "expected an IP"),
        ({"max_body_bytes": 0}, "body limit"),
    ],
)
def test_half_or_wrong_tls_options_are_refused(
    cfg: GatewayConfig, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render_config(replace(cfg, **changes))


def test_a_taken_port_is_named_before_envoy_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)  # free again once closed


# --- parse_host_port ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("identity:50051", ("identity", 50051)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:50051", ("::1", 50051)),
        ("[::]:8080", ("::", 8080)),
    ],
)
def test_parse_host_port_accepts_host_and_bracketed_v6(value: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "8080",
        "identity",
        "identity:",
        ":8080",
        "::1:8080",
        "[::1]",
        "[nothost]:80",
        "host:65536",
        "host:http",
    ],
)
def test_parse_host_port_refuses_anything_else(value: str) -> None:
    with pytest.raises(ValueError, match=r"PORT|IPv6|range"):
        parse_host_port(value)


# --- default_descriptor_path ---------------------------------------------------


def test_descriptor_is_found_in_the_source_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gateway.DESCRIPTOR_ENV, raising=False)
    path = default_descriptor_path()
    assert path.name == "identity_descriptor.pb"
    assert path.is_file()


def test_descriptor_env_var_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    chosen = tmp_path / "custom.pb"
    chosen.write_bytes(b"")
    monkeypatch.setenv(gateway.DESCRIPTOR_ENV, str(chosen))
    assert default_descriptor_path() == chosen


def test_descriptor_env_var_naming_nothing_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(gateway.DESCRIPTOR_ENV, str(tmp_path / "missing.pb"))
    with pytest.raises(FileNotFoundError, match=gateway.DESCRIPTOR_ENV):
        default_descriptor_path()


# --- render_config -------------------------------------------------------------


def test_default_render_exposes_only_auth_service(cfg: GatewayConfig, descriptor: Path) -> None:
    rendered = render_config(cfg)

    assert re.search(r"\$\{?[A-Za-z_]", rendered) is None  # no placeholder left
    assert 'services: ["identity.v1.AuthService"]' in rendered
    assert route_prefixes(rendered) == ["/identity.v1.AuthService/"]
    assert RBAC not in rendered
    assert f"proto_descriptor: {json.dumps(str(descriptor))}" in rendered
    assert 'socket_address: {address: "127.0.0.1", port_value: 8080}' in rendered
    assert 'socket_address: {address: "127.0.0.1", port_value: 50051}' in rendered
    assert "type: STATIC" in rendered
    # No origin is allowed unless one is configured.
    assert "allow_origin_string_match: []" in rendered


def test_filter_order_is_cors_edge_transcoder_router(cfg: GatewayConfig) -> None:
    rendered = render_config(cfg)
    cors = rendered.index("name: envoy.filters.http.cors")
    edge = rendered.index("name: envoy.filters.http.lua")
    transcoder = rendered.index("name: envoy.filters.http.grpc_json_transcoder")
    router = rendered.index("name: envoy.filters.http.router")
    assert cors < edge < transcoder < router


def test_transcoder_options(cfg: GatewayConfig) -> None:
    rendered = render_config(cfg)
    for line in (
        "auto_mapping: false",
        "convert_grpc_status: true",
        "always_print_primitive_fields: true",
        "preserve_proto_field_names: true",
        "reject_unknown_method: true",
        "reject_unknown_query_parameters: true",
        "use_remote_address: true",
        "xff_num_trusted_hops: 0",
        "http2_protocol_options: {}",
        "connect_timeout: 2s",
    ):
        assert line in rendered, line


def test_custom_render_adds_services_origins_and_dns_upstream(cfg: GatewayConfig) -> None:
    custom = replace(
        cfg,
        listen_host="::",
        listen_port=9090,
        upstream_host="identity",
        services=("identity.v1.AuthService", RBAC),
        cors_origins=("https://www.cinema.example", "http://localhost:3000"),
    )
    rendered = render_config(custom)

    assert f'services: ["identity.v1.AuthService", "{RBAC}"]' in rendered
    assert route_prefixes(rendered) == ["/identity.v1.AuthService/", f"/{RBAC}/"]
    assert 'socket_address: {address: "::", port_value: 9090}' in rendered
    assert 'socket_address: {address: "identity", port_value: 50051}' in rendered
    assert "type: STRICT_DNS" in rendered
    assert (
        'allow_origin_string_match: [{"exact": "https://www.cinema.example", "ignore_case": true}, '
        '{"exact": "http://localhost:3000", "ignore_case": true}]'
    ) in rendered


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "www.cinema.example",
        "https://www.cinema.example/",
        "https://www.cinema.example/path",
        "ftp://www.cinema.example",
        'https://a.example"}]\n  evil: true',
        "https://a.example:port",
        "https://user@a.example",
        "",
    ],
)
def test_bad_origins_are_refused(cfg: GatewayConfig, origin: str) -> None:
    with pytest.raises(ValueError, match="CORS origin"):
        render_config(replace(cfg, cors_origins=("https://ok.example", origin)))


@pytest.mark.parametrize(
    "service",
    [
        "",
        "1identity.v1.AuthService",
        "identity.v1.Auth Service",
        'identity.v1.AuthService"]',
        "identity/v1",
        "a\nb",
    ],
)
def test_bad_service_names_are_refused(cfg: GatewayConfig, service: str) -> None:
    with pytest.raises(ValueError, match="service name"):
        render_config(replace(cfg, services=("identity.v1.AuthService", service)))


def test_no_services_or_duplicates_are_refused(cfg: GatewayConfig) -> None:
    with pytest.raises(ValueError, match="at least one"):
        render_config(replace(cfg, services=()))
    with pytest.raises(ValueError, match="duplicate"):
        render_config(replace(cfg, services=(RBAC, RBAC)))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("listen_host", "0.0.0.0\n  evil: true"),
        ("upstream_host", 'identity"'),
        ("upstream_host", ""),
        ("upstream_port", 0),
        ("listen_port", 70000),
    ],
)
def test_bad_addresses_are_refused(cfg: GatewayConfig, field: str, value: Any) -> None:
    with pytest.raises(ValueError, match="invalid"):
        render_config(replace(cfg, **{field: value}))


# --- the real Envoy: validate mode ---------------------------------------------


def test_envoy_is_found() -> None:
    assert Path(find_envoy()).name == "envoy"


def test_envoy_accepts_default_config(cfg: GatewayConfig) -> None:
    validate_config(cfg)


def test_envoy_accepts_config_with_rbac_exposed(cfg: GatewayConfig) -> None:
    validate_config(replace(cfg, services=("identity.v1.AuthService", RBAC)))


def test_envoy_accepts_config_with_two_origins_and_dns_upstream(cfg: GatewayConfig) -> None:
    validate_config(
        replace(
            cfg,
            upstream_host="localhost",
            cors_origins=("https://www.cinema.example", "http://localhost:3000"),
        )
    )


def test_envoy_rejects_a_service_missing_from_the_descriptor(cfg: GatewayConfig) -> None:
    with pytest.raises(RuntimeError, match=r"identity\.v1\.NoSuchService"):
        validate_config(replace(cfg, services=("identity.v1.NoSuchService",)))


def test_envoy_rejects_a_missing_descriptor(cfg: GatewayConfig, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="envoy rejected"):
        validate_config(replace(cfg, descriptor_path=tmp_path / "missing.pb"))


# --- the real Envoy: a running gateway in front of a stand-in AuthService -------------


class _StandInAuth(auth_pb2_grpc.AuthServiceServicer):
    """Login echoes the metadata the server would see; login "bad" fails like the real one."""

    def Login(self, request: auth_pb2.LoginRequest, context: grpc.ServicerContext) -> auth_pb2.LoginResponse:
        if request.login == "bad":
            detail = any_pb2.Any()
            detail.Pack(error_details_pb2.ErrorInfo(reason="INVALID_CREDENTIALS", domain="identity.v1"))
            status = status_pb2.Status(
                code=code_pb2.UNAUTHENTICATED, message="invalid login or password", details=[detail]
            )
            context.abort_with_status(rpc_status.to_status(status))
        metadata = dict(context.invocation_metadata())
        seen = {key: metadata.get(key, "") for key in ("authorization", "x-forwarded-for")}
        return auth_pb2.LoginResponse(access_token=json.dumps(seen), token_type="Bearer")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited early with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"gateway did not listen on {port} within {timeout}s")


def _http(
    method: str, url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


@pytest.fixture
def running_gateway(descriptor: Path, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    auth_pb2_grpc.add_AuthServiceServicer_to_server(_StandInAuth(), server)
    upstream_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    listen_port = _free_port()
    cfg = GatewayConfig(
        listen_host="127.0.0.1",
        listen_port=listen_port,
        upstream_host="127.0.0.1",
        upstream_port=upstream_port,
        descriptor_path=descriptor,
        cors_origins=("https://www.cinema.example",),
    )
    # run_gateway in a process of its own: it owns the signal handlers there.
    config_out = tmp_path / "envoy.yaml"
    script = (
        "import sys; from pathlib import Path; from identity.gateway import GatewayConfig, run_gateway; "
        f"cfg = GatewayConfig('127.0.0.1', {listen_port}, '127.0.0.1', {upstream_port}, "
        f"Path({str(descriptor)!r}), cors_origins=('https://www.cinema.example',)); "
        f"sys.exit(run_gateway(cfg, Path({str(config_out)!r})))"
    )
    # A session of its own, so that teardown can always reach Envoy as well.
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        _wait_for_port(listen_port, proc)
        assert config_out.read_text() == render_config(cfg)
        yield f"http://127.0.0.1:{listen_port}", proc
    finally:
        _stop_gateway(proc)
        server.stop(grace=None)


def _stop_gateway(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    # Whatever is left of the session (Envoy, if forwarding failed) goes too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.mark.e2e
def test_gateway_transcodes_and_forwards_authorization_and_client_ip(
    running_gateway: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, _ = running_gateway
    status, _, body = _http(
        "POST",
        f"{base}/v1/auth/login",
        {"login": "someone", "password": "pw"},
        {"authorization": "Bearer abc"},
    )
    assert status == 200
    reply = json.loads(body)
    assert reply["token_type"] == "Bearer"
    assert reply["mfa_required"] is False  # primitive fields are always printed
    seen = json.loads(reply["access_token"])
    assert seen["authorization"] == "Bearer abc"
    assert seen["x-forwarded-for"]


@pytest.mark.e2e
def test_gateway_turns_grpc_errors_into_json_status(
    running_gateway: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, _ = running_gateway
    status, headers, body = _http("POST", f"{base}/v1/auth/login", {"login": "bad", "password": "pw"})
    assert status == 401
    assert headers["content-type"] == "application/json"
    error = json.loads(body)
    assert error["code"] == code_pb2.UNAUTHENTICATED
    assert error["message"] == "invalid login or password"
    assert error["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "INVALID_CREDENTIALS",
            "domain": "identity.v1",
            "metadata": {},
        }
    ]


@pytest.mark.e2e
def test_gateway_answers_preflight_for_allowed_origin_only(
    running_gateway: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, _ = running_gateway
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "authorization"}
    allowed = {"origin": "https://www.cinema.example"}
    status, headers, _ = _http("OPTIONS", f"{base}/v1/auth/login", headers=allowed | preflight)
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://www.cinema.example"
    assert headers["access-control-allow-methods"] == "GET, POST, PATCH, DELETE, OPTIONS"
    assert headers["access-control-allow-headers"] == "authorization, content-type, x-request-id"
    assert headers["access-control-max-age"] == "600"

    status, headers, body = _http(
        "OPTIONS", f"{base}/v1/auth/login", headers={"origin": "https://evil.example"} | preflight
    )
    assert status == 403
    assert "access-control-allow-origin" not in headers
    assert json.loads(body)["details"][0]["reason"] == "ORIGIN_NOT_ALLOWED"

    status, headers, _ = _http("POST", f"{base}/v1/auth/login", {"login": "bad"}, allowed)
    assert status == 401
    assert headers["access-control-allow-origin"] == "https://www.cinema.example"
    assert headers["access-control-expose-headers"] == "grpc-status, grpc-message, x-request-id"


@pytest.mark.e2e
def test_gateway_refuses_everything_else(running_gateway: tuple[str, subprocess.Popen[bytes]]) -> None:
    base, _ = running_gateway
    assert _http("GET", f"{base}/v1/roles")[0] == 404  # RbacService is not exposed by default
    assert _http("GET", f"{base}/admin")[0] == 404
    assert _http("GET", f"{base}/v1/auth/jwks?unknown=1")[0] == 400


@pytest.mark.e2e
def test_native_grpc_reaches_exposed_services_only(
    running_gateway: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, _ = running_gateway
    with grpc.insecure_channel(base.removeprefix("http://")) as channel:
        reply = auth_pb2_grpc.AuthServiceStub(channel).Login(auth_pb2.LoginRequest(login="x"), timeout=10)
        assert reply.token_type == "Bearer"
        with pytest.raises(grpc.RpcError) as refused:
            rbac_pb2_grpc.RbacServiceStub(channel).ListRoles(rbac_pb2.ListRolesRequest(), timeout=10)
    # Answered by Envoy itself, not by the upstream (which would say UNIMPLEMENTED too).
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert refused.value.details() == "service not exposed by this gateway"


@pytest.mark.e2e
def test_sigterm_stops_envoy_and_the_gateway_exits_cleanly(
    running_gateway: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, proc = running_gateway
    port = int(base.rsplit(":", 1)[1])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "envoy still listening after the gateway exited"


def test_find_envoy_explains_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"identity\[gateway\]"):
        find_envoy()
