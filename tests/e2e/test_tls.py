"""TLS on the gRPC listener and through the gateway, with certificates made here:
grpcurl with the CA's certificate, not in plaintext; mutual TLS with a peer's
certificate as its credential; a renewed certificate served without a restart; the
website path over HTTPS to a server that demands the gateway's client certificate."""

from __future__ import annotations

import os
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from identity.v1 import rbac_pb2, rbac_pb2_grpc
from tests.certs import Authority, Issued, new_authority, served_serial
from tests.e2e.conftest import (
    ServerProcess,
    error_reason,
    http,
    identity_cli,
    start_gateway,
    start_server_process,
    wait_for,
)
from tests.support import STRONG_PASSWORD, failure, new_login


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Authority
    server: Issued
    peer: Issued  # CN = a peer name registered with a service key in the tests
    stranger: Issued  # issued by our CA, but for a name with no service key
    gateway: Issued
    foreign_peer: Issued  # same name as `peer`, issued by a CA nobody trusts


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = new_authority(directory, "identity-test")
    foreign = new_authority(directory, "foreign")
    peer_name = f"billing-{uuid.uuid4().hex[:8]}"
    return Pki(
        directory=directory,
        ca=ca,
        server=ca.issue(directory, "identity", hosts=("127.0.0.1", "localhost"), stem="server"),
        peer=ca.issue(directory, peer_name, client=True, stem="peer"),
        stranger=ca.issue(directory, "stranger", client=True, stem="stranger"),
        gateway=ca.issue(directory, "identity-gateway", client=True, stem="gateway"),
        foreign_peer=foreign.issue(directory, peer_name, client=True, stem="foreign-peer"),
    )


def peer_name(pki: Pki) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(pki.peer.cert.read_bytes())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def credentials(pki: Pki, client: Issued | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.path.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


def grpcurl_list(grpcurl: str, address: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [grpcurl, "-max-time", "10", *flags, address, "list"], capture_output=True, text=True, timeout=30
    )


@pytest.fixture
def tls_server(database_url: str, pki: Pki, tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server_process(
        database_url,
        tmp_path,
        credentials=credentials(pki),
        IDENTITY_TLS_CERT_FILE=str(pki.server.cert),
        IDENTITY_TLS_KEY_FILE=str(pki.server.key),
    )
    yield server
    server.stop()


@pytest.fixture
def mtls_server(database_url: str, pki: Pki, tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server_process(
        database_url,
        tmp_path,
        credentials=credentials(pki, pki.peer),
        IDENTITY_TLS_CERT_FILE=str(pki.server.cert),
        IDENTITY_TLS_KEY_FILE=str(pki.server.key),
        IDENTITY_TLS_CLIENT_CA_FILE=str(pki.ca.path),
    )
    yield server
    server.stop()


def test_grpcurl_needs_the_ca_and_plaintext_is_refused(
    tls_server: ServerProcess, pki: Pki, grpcurl: str
) -> None:
    trusted = grpcurl_list(grpcurl, tls_server.address, "-cacert", str(pki.ca.path))
    assert trusted.returncode == 0, trusted.stderr
    assert "identity.v1.AuthService" in trusted.stdout
    plaintext = grpcurl_list(grpcurl, tls_server.address, "-plaintext")
    assert plaintext.returncode != 0
    unknown_ca = grpcurl_list(grpcurl, tls_server.address)  # the system roots do not know our CA
    assert unknown_ca.returncode != 0
    assert "certificate" in unknown_ca.stderr.lower()
    serving = [line for line in tls_server.log_lines() if line.get("event") == "serving"]
    assert serving and serving[0]["tls"] is True
    assert not [line for line in tls_server.log_lines() if line.get("event") == "plaintext_listener"]


def _replace(source: Issued, target: Issued) -> None:
    # How renewal tools write: a new file renamed over the old one, key first.
    for src, dst in ((source.key, target.key), (source.cert, target.cert)):
        tmp = dst.with_suffix(".tmp")
        tmp.write_bytes(src.read_bytes())
        os.replace(tmp, dst)


def test_a_renewed_certificate_is_served_without_a_restart(
    database_url: str, pki: Pki, tmp_path: Path, grpcurl: str
) -> None:
    live = Issued(tmp_path / "live.pem", tmp_path / "live.key", pki.server.serial)
    _replace(pki.server, live)
    server = start_server_process(
        database_url,
        tmp_path,
        credentials=credentials(pki),
        IDENTITY_TLS_CERT_FILE=str(live.cert),
        IDENTITY_TLS_KEY_FILE=str(live.key),
    )
    try:
        assert served_serial("127.0.0.1", server.port, pki.ca.path) == pki.server.serial
        renewed = pki.ca.issue(tmp_path, "identity", hosts=("127.0.0.1",), stem="renewed")
        _replace(renewed, live)
        wait_for(
            lambda: served_serial("127.0.0.1", server.port, pki.ca.path) == renewed.serial,
            "the renewed certificate to be served",
            timeout=10,
        )
        assert grpcurl_list(grpcurl, server.address, "-cacert", str(pki.ca.path)).returncode == 0

        # Half a renewal (a key that is not the certificate's): the previous pair stays.
        other = pki.ca.issue(tmp_path, "identity", hosts=("127.0.0.1",), stem="other")
        live.key.write_bytes(other.key.read_bytes())
        assert served_serial("127.0.0.1", server.port, pki.ca.path) == renewed.serial
        assert grpcurl_list(grpcurl, server.address, "-cacert", str(pki.ca.path)).returncode == 0
        assert server.process.poll() is None
        events = [line.get("event") for line in server.log_lines()]
        assert "tls_reloaded" in events and "tls_reload_skipped" in events
    finally:
        server.stop()


def test_mutual_tls_refuses_clients_without_a_certificate_of_our_ca(
    mtls_server: ServerProcess, pki: Pki, grpcurl: str
) -> None:
    ca = ("-cacert", str(pki.ca.path))
    with_cert = grpcurl_list(
        grpcurl, mtls_server.address, *ca, "-cert", str(pki.peer.cert), "-key", str(pki.peer.key)
    )
    assert with_cert.returncode == 0, with_cert.stderr
    assert grpcurl_list(grpcurl, mtls_server.address, *ca).returncode != 0
    foreign = ("-cert", str(pki.foreign_peer.cert), "-key", str(pki.foreign_peer.key))
    assert grpcurl_list(grpcurl, mtls_server.address, *ca, *foreign).returncode != 0


def _check(server: ServerProcess, creds: grpc.ChannelCredentials) -> rbac_pb2.CheckPermissionResponse:
    with grpc.secure_channel(server.address, creds) as channel:
        stub = rbac_pb2_grpc.RbacServiceStub(channel)
        request = rbac_pb2.CheckPermissionRequest(
            subject=rbac_pb2.Subject(user_id=str(uuid.uuid4())), permission="catalog.films.read"
        )
        reply: rbac_pb2.CheckPermissionResponse = stub.CheckPermission(request, timeout=10)
        return reply


def test_a_peer_certificate_stands_in_for_its_service_key(
    mtls_server: ServerProcess, pki: Pki, database_url: str
) -> None:
    name = peer_name(pki)
    identity_cli(database_url, "service-keys", "create", name)
    reply = _check(mtls_server, credentials(pki, pki.peer))
    assert reply.reason == rbac_pb2.DECISION_REASON_USER_UNKNOWN and not reply.allowed

    # Our CA's certificate for a name with no service key is no peer.
    with pytest.raises(grpc.RpcError) as refused:
        _check(mtls_server, credentials(pki, pki.stranger))
    assert failure(refused.value).code == grpc.StatusCode.UNAUTHENTICATED

    # Revoking the name's keys revokes its certificate's standing too.
    identity_cli(database_url, "service-keys", "revoke", name)
    with pytest.raises(grpc.RpcError) as revoked:
        _check(mtls_server, credentials(pki, pki.peer))
    assert failure(revoked.value).code == grpc.StatusCode.UNAUTHENTICATED


def test_the_website_path_works_over_tls_end_to_end(
    mtls_server: ServerProcess, pki: Pki, tmp_path: Path
) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca.path))
    gateway = start_gateway(
        mtls_server.address,
        tmp_path,
        "--tls-cert",
        str(pki.server.cert),
        "--tls-key",
        str(pki.server.key),
        "--upstream-ca",
        str(pki.ca.path),
        "--upstream-cert",
        str(pki.gateway.cert),
        "--upstream-key",
        str(pki.gateway.key),
        context=context,
    )
    try:
        base = gateway.base_url
        assert base.startswith("https://")
        login = new_login("tls")
        credentials_body = {"login": login, "password": STRONG_PASSWORD}
        status, body, _ = http("POST", base + "/v1/auth/register", credentials_body, context=context)
        assert status == 200, body
        status, tokens, _ = http("POST", base + "/v1/auth/login", credentials_body, context=context)
        assert status == 200, tokens
        bearer = {"authorization": f"Bearer {tokens['access_token']}"}
        status, sessions, _ = http("GET", base + "/v1/account/sessions", None, bearer, context=context)
        assert status == 200 and len(sessions["sessions"]) == 1
        status, body, _ = http(
            "POST", base + "/v1/auth/login", {"login": login, "password": "nope nope"}, context=context
        )
        assert status == 401 and error_reason(body) == "INVALID_CREDENTIALS"
        # The HTTPS port speaks nothing else.
        with pytest.raises(OSError):
            http("GET", base.replace("https://", "http://") + "/v1/auth/jwks")
    finally:
        gateway.stop()


def test_a_gateway_without_the_servers_ca_answers_a_json_503(
    tls_server: ServerProcess, tmp_path: Path
) -> None:
    # Plaintext to a TLS server: no call ever gets through.
    gateway = start_gateway(tls_server.address, tmp_path, ready_status=503)
    try:
        status, body, headers = http("GET", gateway.base_url + "/v1/auth/jwks")
        assert status == 503
        assert headers["content-type"] == "application/json"
        assert body["code"] == 14 and error_reason(body) == "BACKEND_UNAVAILABLE"
    finally:
        gateway.stop()
