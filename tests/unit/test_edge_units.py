"""Client addresses behind trusted proxies, TLS files and the plaintext warning,
method reflection: the pure parts, without a network."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from structlog.testing import capture_logs

from identity.api.metadata import client_ip
from identity.api.reflection import MethodAwarePool
from identity.config import Settings
from identity.tls import CertificateReloader, TlsFiles, add_port, is_loopback, load
from tests.certs import new_authority

PROXIES = (ipaddress.ip_network("127.0.0.2/32"), ipaddress.ip_network("10.0.0.0/8"))


class FakeContext:
    def __init__(self, peer: str, forwarded: str | None = None) -> None:
        self._peer = peer
        self._metadata = () if forwarded is None else (("x-forwarded-for", forwarded),)

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> Any:
        return self._metadata


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # Not a proxy: the header is ignored, whatever it says.
        ("ipv4:127.0.0.1:5000", "203.0.113.9", "127.0.0.1"),
        ("ipv4:192.0.2.4:5000", "203.0.113.9, 127.0.0.2", "192.0.2.4"),
        # A proxy: the right-most address that is not a proxy.
        ("ipv4:127.0.0.2:5000", "203.0.113.9", "203.0.113.9"),
        ("ipv4:127.0.0.2:5000", "198.51.100.1, 203.0.113.9", "203.0.113.9"),
        ("ipv4:127.0.0.2:5000", "203.0.113.9, 10.1.2.3", "203.0.113.9"),
        # A proxy without a header, or with garbage: the last address known good.
        ("ipv4:127.0.0.2:5000", None, "127.0.0.2"),
        ("ipv4:127.0.0.2:5000", "not-an-ip", "127.0.0.2"),
        ("ipv4:127.0.0.2:5000", "203.0.113.9, junk, 10.0.0.1", "10.0.0.1"),
        # Only proxies in the chain: the furthest one.
        ("ipv4:127.0.0.2:5000", "10.0.0.5, 10.0.0.1", "10.0.0.5"),
        # IPv6, and an IPv4 proxy seen as an IPv4-mapped IPv6 peer.
        ("ipv6:[::ffff:127.0.0.2]:5000", "2001:db8::1", "2001:db8::1"),
        ("ipv6:[::1]:5000", "203.0.113.9", "::1"),
    ],
)
def test_client_ip_believes_only_configured_proxies(peer: str, forwarded: str | None, expected: str) -> None:
    assert client_ip(FakeContext(peer, forwarded), PROXIES) == expected  # type: ignore[arg-type]


def test_without_proxies_the_header_is_never_read() -> None:
    assert client_ip(FakeContext("ipv4:127.0.0.2:1", "203.0.113.9"), ()) == "127.0.0.2"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.0.0.5:50051", False),
        ("identity.internal:50051", False),
    ],
)
def test_loopback_addresses(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


async def test_plaintext_off_loopback_is_warned_about_and_on_loopback_is_not() -> None:
    for listen, warned in (("0.0.0.0:0", True), ("127.0.0.1:0", False)):
        server = grpc.aio.server()
        with capture_logs() as logs:
            port, reloader = add_port(server, Settings(grpc_listen=listen))
        assert port > 0 and reloader is None
        assert any(entry["event"] == "plaintext_listener" for entry in logs) is warned
        await server.stop(None)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tls_cert_file": "/x.pem"}, "go together"),
        ({"tls_key_file": "/x.key"}, "go together"),
        ({"tls_client_ca_file": "/ca.pem"}, "needs IDENTITY_TLS_CERT_FILE"),
    ],
)
def test_half_a_tls_configuration_is_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TlsFiles.from_settings(Settings(**values))


def replace_file(path: Path, content: bytes) -> None:
    # A new file renamed over the old one, as renewal tools do (a new inode: no
    # dependence on the file system's timestamp granularity).
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def test_a_key_of_another_certificate_is_refused_and_a_reload_keeps_the_old_pair(tmp_path: Path) -> None:
    ca = new_authority(tmp_path, "unit")
    first = ca.issue(tmp_path, "one", hosts=("127.0.0.1",))
    second = ca.issue(tmp_path, "two", hosts=("127.0.0.1",))
    with pytest.raises(ValueError, match="does not belong"):
        load(TlsFiles(first.cert, second.key))
    reloader = CertificateReloader(TlsFiles(first.cert, first.key))
    assert reloader.fetch() is None  # nothing changed
    replace_file(first.key, second.key.read_bytes())  # half a renewal
    with capture_logs() as logs:
        assert reloader.fetch() is None
    assert [entry["event"] for entry in logs] == ["tls_reload_skipped"]
    replace_file(first.cert, second.cert.read_bytes())  # the renewal completed
    assert reloader.fetch() is not None and reloader.reloads == 1
    assert reloader.fetch() is None


def test_reflection_finds_methods_and_nothing_else_new() -> None:
    pool = MethodAwarePool(descriptor_pool.Default())
    import identity.v1.auth_pb2  # noqa: F401 - registers the file in the default pool

    assert pool.FindFileContainingSymbol("identity.v1.AuthService.Login").name == "identity/v1/auth.proto"
    assert pool.FindFileContainingSymbol("identity.v1.AuthService").name == "identity/v1/auth.proto"
    for missing in ("identity.v1.AuthService.Nope", "identity.v1.Nothing.Login", "Login"):
        with pytest.raises(KeyError):
            pool.FindFileContainingSymbol(missing)
