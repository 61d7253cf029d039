"""Envoy's tracing in the rendered gateway config: off without an OTLP endpoint,
a valid config (envoy --mode validate) with one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from identity import gateway as gw


def _config(tmp_path: Path, endpoint: str | None) -> gw.GatewayConfig:
    return gw.GatewayConfig(
        listen_host="127.0.0.1",
        listen_port=8080,
        upstream_host="127.0.0.1",
        upstream_port=50051,
        descriptor_path=gw.default_descriptor_path(),
        otlp_endpoint=endpoint,
    )


def _manager(rendered: str) -> dict:
    document = yaml.safe_load(rendered)
    listener = document["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def test_no_tracing_without_an_endpoint(tmp_path) -> None:
    rendered = gw.render_config(_config(tmp_path, None))
    assert "tracing" not in _manager(rendered)
    clusters = yaml.safe_load(rendered)["static_resources"]["clusters"]
    assert "otlp_collector" not in {c["name"] for c in clusters}


def test_tracing_exports_to_the_collector(tmp_path) -> None:
    cfg = _config(tmp_path, "http://127.0.0.1:4317")
    rendered = gw.render_config(cfg)
    provider = _manager(rendered)["tracing"]["provider"]
    assert provider["name"] == "envoy.tracers.opentelemetry"
    assert provider["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == "otlp_collector"
    clusters = {c["name"]: c for c in yaml.safe_load(rendered)["static_resources"]["clusters"]}
    address = clusters["otlp_collector"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert address["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 4317}
    gw.validate_config(cfg)


def test_a_tls_collector_gets_a_tls_cluster(tmp_path) -> None:
    cfg = _config(tmp_path, "https://collector.example:4317")
    clusters = {c["name"]: c for c in yaml.safe_load(gw.render_config(cfg))["static_resources"]["clusters"]}
    assert clusters["otlp_collector"]["transport_socket"]["typed_config"]["sni"] == "collector.example"
    gw.validate_config(cfg)


@pytest.mark.parametrize(
    "endpoint", ["collector:4317", "ftp://collector:4317", "http://bad host:4317", "http://a:4317/x\n"]
)
def test_a_bad_endpoint_is_refused(tmp_path, endpoint) -> None:
    with pytest.raises(ValueError, match="OTLP endpoint"):
        gw.render_config(_config(tmp_path, endpoint))
