"""Observability configuration and the observer seam, without servers."""

from __future__ import annotations

import pytest

from identity.config import Settings
from identity.domain.models import LoginOutcome
from identity.domain.observer import NOOP, CacheEvent, RefreshOutcome, ThrottleScope
from identity.domain.permissions import DecisionReason
from identity.observability import otlp_endpoint
from identity.observability.listener import parse_listen


def test_traces_are_off_unless_an_endpoint_is_set() -> None:
    assert otlp_endpoint(Settings(), {}) is None


def test_our_variable_wins_over_the_standard_ones() -> None:
    settings = Settings.from_env({"IDENTITY_OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4317"}
    assert otlp_endpoint(settings, env) == "http://collector:4317"


def test_the_standard_variables_are_honoured() -> None:
    assert otlp_endpoint(Settings(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317"}) == "http://a:4317"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4317",
    }
    assert otlp_endpoint(Settings(), env) == "http://t:4317"


def test_otel_sdk_disabled_turns_traces_off() -> None:
    settings = Settings.from_env({"IDENTITY_OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert otlp_endpoint(settings, {"OTEL_SDK_DISABLED": "true"}) is None


def test_the_tracing_endpoint_needs_a_scheme() -> None:
    from identity.observability.tracing import parse_endpoint

    assert parse_endpoint("http://127.0.0.1:4317") == ("127.0.0.1", 4317, True)
    assert parse_endpoint("https://collector.example") == ("collector.example", 4317, False)
    with pytest.raises(ValueError, match="OTLP endpoint"):
        parse_endpoint("collector:4317")


def test_metrics_listen_is_host_and_port() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen(":9464") == ("0.0.0.0", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", "host:", "host:port", "host:70000"):
        with pytest.raises(ValueError, match="IDENTITY_METRICS_LISTEN"):
            parse_listen(bad)


def test_the_noop_observer_accepts_every_event() -> None:
    NOOP.rpc_done("identity.v1.AuthService", "Login", "OK", 0.1)
    NOOP.password_check(LoginOutcome.SUCCESS, reauthentication=False)
    NOOP.mfa(LoginOutcome.MFA_FAILED)
    NOOP.refresh(RefreshOutcome.ROTATED)
    NOOP.throttled(ThrottleScope.ADDRESS)
    NOOP.account_locked()
    NOOP.decision(DecisionReason.GRANTED)
    NOOP.permission_cache(CacheEvent.HIT)
    NOOP.rbac_lease_lost()
    NOOP.redis_error()
    NOOP.db_pool_timeout()
    with NOOP.bcrypt("verify"):
        pass


def test_services_do_not_import_the_telemetry_libraries() -> None:
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src" / "identity"
    for folder in ("services", "store", "domain", "security", "api"):
        for path in (src / folder).glob("*.py"):
            text = path.read_text()
            assert "prometheus_client" not in text and "opentelemetry" not in text, path


def _samples(registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")  # creation times differ between the two registries
    }


def test_tallied_calls_flush_to_what_direct_observations_give() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    from identity.observability.metrics import LATENCY_BUCKETS, Metrics, MetricsObserver

    registry = CollectorRegistry()
    observer = MetricsObserver(Metrics(registry))
    reference = CollectorRegistry()
    direct = Histogram(
        "grpc_server_handling_seconds",
        "",
        ["grpc_service", "grpc_method"],
        buckets=LATENCY_BUCKETS,
        registry=reference,
    ).labels("s", "m")
    # Bounds themselves, values between them, and past the last bound.
    values = [0.0, 0.0005, 0.0007, 0.001, 0.3, 2.5, 10.0, 11.0, 0.0005]
    for value in values[:4]:
        observer.rpc_done("s", "m", "OK", value)
        direct.observe(value)
    observer.flush()
    for value in values[4:]:
        observer.rpc_done("s", "m", "OK", value)
        direct.observe(value)
    observer.decision(DecisionReason.GRANTED)
    observer.permission_cache(CacheEvent.HIT)
    observer.flush()
    observer.flush()  # nothing new: nothing added twice

    got, want = _samples(registry), _samples(reference)
    histogram = {
        key: value for key, value in got.items() if key[0].startswith("grpc_server_handling_seconds")
    }
    assert histogram == pytest.approx(want)
    labels = (("grpc_code", "OK"), ("grpc_method", "m"), ("grpc_service", "s"))
    assert got[("grpc_server_handled_total", labels)] == len(values)
    assert got[("identity_permission_decisions_total", (("reason", "GRANTED"),))] == 1
    assert got[("identity_permission_cache_hits_total", ())] == 1
