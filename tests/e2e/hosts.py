"""Several hosts on one machine: network namespaces joined by a bridge.

Each host is a namespace with one veth into a bridge in the root namespace; the root
side of the bridge is the "database host" (a private PostgreSQL and Redis listening on
the bridge address) and runs the load balancer and the test. The subnet is picked at
random among 10.2xx.yyy.0/24 not in use here, and every address used is one of ours.
Needs root and a kernel that allows namespaces; `unavailable()` says why not."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def unavailable() -> str | None:
    """Why hosts cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    probe = f"idprobe{os.getpid()}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        return f"`ip netns add` is refused here: {made.stderr.strip()}"
    _ip("netns", "del", probe)
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("redis-server") is None:
        return "the local PostgreSQL and Redis binaries are needed for a private database host"
    return None


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


def _free_subnet() -> str:
    in_use = _ip("-o", "addr").stdout + _ip("route").stdout
    for _ in range(100):
        prefix = f"10.{random.randint(200, 249)}.{random.randint(0, 255)}"
        if f"{prefix}." not in in_use:
            return prefix
    raise RuntimeError("no free 10.2xx.yyy.0/24 subnet")


@dataclass
class Network:
    tag: str
    prefix: str
    hosts: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"b{self.tag}"

    @property
    def gateway_ip(self) -> str:
        return f"{self.prefix}.1"

    def host_ip(self, index: int) -> str:
        return f"{self.prefix}.{11 + index}"

    def exec_prefix(self, index: int) -> list[str]:
        return ["ip", "netns", "exec", self.hosts[index]]


@contextlib.contextmanager
def network(count: int) -> Iterator[Network]:
    net = Network(f"i{os.getpid() % 100000:05d}{secrets.token_hex(1)}", _free_subnet())
    try:
        _run("ip", "link", "add", net.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{net.gateway_ip}/24", "dev", net.bridge)
        _run("ip", "link", "set", net.bridge, "up")
        for index in range(count):
            name = f"{net.tag}h{index}"
            veth = f"v{net.tag}{index}"
            _run("ip", "netns", "add", name)
            net.hosts.append(name)
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
            _run("ip", "link", "set", veth, "master", net.bridge, "up")
            inside = ["ip", "netns", "exec", name, "ip"]
            _run(*inside, "addr", "add", f"{net.host_ip(index)}/24", "dev", "eth0")
            _run(*inside, "link", "set", "eth0", "up")
            _run(*inside, "link", "set", "lo", "up")
        yield net
    finally:
        for name in net.hosts:
            _ip("netns", "del", name)  # takes its end of the veth, and so the pair, along
        _ip("link", "del", net.bridge)


@dataclass
class DatabaseHost:
    """A private PostgreSQL and Redis on the bridge address (never the shared ones)."""

    address: str
    pg_port: int
    redis_port: int

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@{self.address}:{self.pg_port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@{self.address}:{self.pg_port}/{name}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.address}:{self.redis_port}/0"


def _port_free(address: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def database_host(net: Network) -> Iterator[DatabaseHost]:
    pg_bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    # Outside pytest's private tmp (mode 700): the postgres user must reach its data dir.
    root = Path(tempfile.mkdtemp(prefix="identity-hosts-"))
    root.chmod(0o755)
    shutil.chown(root, "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    ports = [p for p in range(56000, 57000) if _port_free(net.gateway_ip, p)]
    pg_port, redis_port = ports[0], ports[1]
    data = root / "pg"
    redis: subprocess.Popen[bytes] | None = None
    started = False
    try:
        _run(*as_pg, str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {net.prefix}.0/24 trust\n")
        options = f"-p {pg_port} -k {root} -c listen_addresses={net.gateway_ip} -c fsync=off"
        _run(
            *as_pg,
            str(pg_bin / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "pg.log"),
            "-w",
            "start",
            "-o",
            options,
        )
        started = True
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", net.gateway_ip, "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--dir", str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while _port_free(net.gateway_ip, redis_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield DatabaseHost(net.gateway_ip, pg_port, redis_port)
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)
        if started:
            subprocess.run([*as_pg, str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60, check=False)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


ENVOY_CONFIG = """\
static_resources:
  listeners:
  - name: grpc
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: grpc
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: identity
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route:
                  cluster: replicas
                  timeout: 30s
                  # Only what never ran on a replica: no connection, a refused stream, or
                  # UNAVAILABLE (a draining server refuses new calls with it). A Refresh that
                  # ran must never run twice.
                  retry_policy:
                    retry_on: connect-failure,refused-stream,unavailable
                    num_retries: 3
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 5
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: replicas
    type: STATIC
    connect_timeout: 1s
    lb_policy: ROUND_ROBIN
    # Envoy allows 3 retries in flight per cluster by default: far too few while a
    # replica goes away under load.
    circuit_breakers:
      thresholds: [{{max_retries: 1000}}]
    # A host that refuses connections is ejected at once, before its health check fails.
    outlier_detection:
      split_external_local_origin_errors: true
      consecutive_local_origin_failure: 1
      interval: 0.5s
      base_ejection_time: 5s
      max_ejection_percent: 34
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    health_checks:
    - timeout: 1s
      interval: 0.25s
      # Not the 60 s Envoy uses for a cluster it counts as idle (it counted ours so).
      no_traffic_interval: 0.25s
      unhealthy_threshold: 1
      healthy_threshold: 1
      grpc_health_check: {{}}
    load_assignment:
      cluster_name: replicas
      endpoints:
      - lb_endpoints:
{endpoints}
"""  # noqa: E501 - the type URLs are as long as they are


def envoy_config(port: int, upstreams: list[tuple[str, int]]) -> str:
    endpoints = "\n".join(
        f"        - endpoint: {{address: {{socket_address: {{address: {host}, port_value: {p}}}}}}}"
        for host, p in upstreams
    )
    return ENVOY_CONFIG.format(port=port, endpoints=endpoints)
