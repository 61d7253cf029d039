"""TLS in the gateway's Envoy config: HTTPS on the listener, TLS (and a client
certificate, for a server asking mutual TLS) to the identity server.

Each function renders one YAML line (a JSON flow mapping) for the template, or a
harmless stand-in when TLS is off. Envoy reads these files at start-up."""

from __future__ import annotations

import json
from pathlib import Path

_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"


def _data_source(path: Path) -> dict[str, str]:
    return {"filename": str(path.resolve())}


def _pair(cert: Path, key: Path) -> dict[str, object]:
    return {"certificate_chain": _data_source(cert), "private_key": _data_source(key)}


def _socket(context: dict[str, object]) -> str:
    return "transport_socket: " + json.dumps({"name": "envoy.transport_sockets.tls", "typed_config": context})


def listener_tls(cert: Path | None, key: Path | None) -> str:
    """The filter chain's first key: its TLS socket, or a name for a plaintext chain."""
    if cert is None or key is None:
        return 'name: "plaintext"'
    return _socket(
        {
            "@type": f"{_TLS}.DownstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "tls_certificates": [_pair(cert, key)],
            },
        }
    )


def upstream_tls(host: str, is_dns_name: bool, ca: Path | None, cert: Path | None, key: Path | None) -> str:
    """The cluster's TLS socket when a CA is given, else a comment (plaintext)."""
    if ca is None:
        return "# plaintext to the server"
    # The server's certificate must name the upstream host, as a DNS name or an IP address.
    san_type = "DNS" if is_dns_name else "IP_ADDRESS"
    common: dict[str, object] = {
        "alpn_protocols": ["h2"],
        "validation_context": {
            "trusted_ca": _data_source(ca),
            "match_typed_subject_alt_names": [{"san_type": san_type, "matcher": {"exact": host}}],
        },
    }
    if cert is not None and key is not None:
        common["tls_certificates"] = [_pair(cert, key)]
    context: dict[str, object] = {"@type": f"{_TLS}.UpstreamTlsContext", "common_tls_context": common}
    if is_dns_name:
        context["sni"] = host
    return _socket(context)
