"""TLS on the gRPC listener: credentials from PEM files, re-read when they change.

gRPC asks `CertificateReloader.fetch` at every new handshake; a cheap `stat` of the
files decides whether anything changed, so a renewed certificate (certbot, cert-
manager, a cron job) is served to the next connection without a restart. A half-
written renewal (a key that does not match its certificate, a file mid-copy) is
skipped and the previous pair kept until the files are whole again.

With a client CA, every client must present a certificate it issued (mutual TLS);
gRPC's Python API has no "ask but do not require" mode."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from identity.config import Settings

log = structlog.get_logger("identity.tls")


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TlsFiles | None:
        """The configured files, or None for plaintext; ValueError on a half configuration."""
        settings.check_tls_files()
        cert, key, client_ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
        if not cert:
            return None
        return cls(Path(cert), Path(key), Path(client_ca) if client_ca else None)

    def paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key) if self.client_ca is None else (self.cert, self.key, self.client_ca)


@dataclass(frozen=True)
class _Loaded:
    key: bytes
    chain: bytes
    client_ca: bytes | None


def _stamp(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int], ...]:
    out = []
    for path in paths:
        st = os.stat(path)
        out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


def load(files: TlsFiles) -> _Loaded:
    """Read and check the files: the key must belong to the first certificate of the chain."""
    chain = files.cert.read_bytes()
    key_pem = files.key.read_bytes()
    client_ca = files.client_ca.read_bytes() if files.client_ca is not None else None
    try:
        certificate = x509.load_pem_x509_certificate(chain)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if client_ca is not None:
            x509.load_pem_x509_certificates(client_ca)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"unreadable PEM: {type(exc).__name__}") from None
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise ValueError(f"the key in {files.key} does not belong to the certificate in {files.cert}")
    return _Loaded(key_pem, chain, client_ca)


def _configuration(loaded: _Loaded) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(loaded.key, loaded.chain)], root_certificates=loaded.client_ca
    )


class CertificateReloader:
    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._stamp = _stamp(files.paths())
        self._initial = _configuration(load(files))  # at start-up a bad file is fatal
        self.reloads = 0

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC at each handshake: a new configuration when the files changed, else None."""
        try:
            stamp = _stamp(self.files.paths())
            if stamp == self._stamp:
                return None
            configuration = _configuration(load(self.files))
        except (OSError, ValueError) as exc:
            # Mid-renewal: keep serving the previous pair, look again at the next handshake.
            reason = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
            log.warning("tls_reload_skipped", error=reason)
            return None
        self._stamp = stamp
        self.reloads += 1
        log.info("tls_reloaded", cert=str(self.files.cert))
        return configuration

    def credentials(self) -> grpc.ServerCredentials:
        # gRPC documents None from the fetcher as "no change"; its stubs do not say so.
        fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], self.fetch)
        return grpc.dynamic_ssl_server_credentials(
            self._initial, fetch, require_client_authentication=self.files.client_ca is not None
        )


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_port(server: grpc.aio.Server, settings: Settings) -> tuple[int, CertificateReloader | None]:
    """Listen on ``settings.grpc_listen``, over TLS when configured; warn about plaintext off loopback."""
    files = TlsFiles.from_settings(settings)
    if files is None:
        if not is_loopback(settings.grpc_listen):
            log.warning(
                "plaintext_listener",
                listen=settings.grpc_listen,
                advice="set IDENTITY_TLS_CERT_FILE and IDENTITY_TLS_KEY_FILE: service keys, passwords and "
                "tokens cross this port",
            )
        return server.add_insecure_port(settings.grpc_listen), None
    reloader = CertificateReloader(files)
    return server.add_secure_port(settings.grpc_listen, reloader.credentials()), reloader
