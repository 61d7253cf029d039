"""Traces from real `identity serve` processes (and a real Envoy) over real OTLP/gRPC
to a receiver run here: the span tree of a Login and a CheckPermission, the trace id
a caller sends in `traceparent` (directly and through Envoy), the trace id on the
call's log lines, and no secret in any span attribute."""

from __future__ import annotations

import secrets
import signal
import subprocess
from collections.abc import Iterator

import grpc
import pytest

from identity.v1 import auth_pb2, auth_pb2_grpc, rbac_pb2, rbac_pb2_grpc
from tests.e2e.conftest import BIN, ServerProcess, free_port, http, start_server_process, wait_for
from tests.e2e.test_rbac_processes import identity
from tests.observability_support import Span, TraceReceiver, delta, scrape, trace_receiver
from tests.support import STRONG_PASSWORD, bearer, new_login

SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SPAN_KIND_SERVER
CLIENT_KIND = 3
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}


def traceparent() -> tuple[str, str, str]:
    """(header value, trace id, parent span id) of a sampled W3C trace context."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


@pytest.fixture(scope="module")
def receiver() -> Iterator[TraceReceiver]:
    with trace_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def traced(database_url, receiver, metrics_port, tmp_path_factory) -> Iterator[ServerProcess]:
    # Metrics on as well: both at once is what production runs.
    server = start_server_process(
        database_url,
        tmp_path_factory.mktemp("traced"),
        IDENTITY_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
        IDENTITY_OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        IDENTITY_LOG_LEVEL="debug",
        IDENTITY_TRUSTED_PROXIES="127.0.0.0/8",  # the gateway connects from loopback
        **FAST_EXPORT,
    )
    yield server
    server.stop()


def in_trace(spans: list[Span], trace_id: str) -> list[Span]:
    return [span for span in spans if span.trace_id == trace_id]


def server_span(spans: list[Span], name: str) -> Span | None:
    return next((s for s in spans if s.kind == SERVER_KIND and s.name == name), None)


def children(spans: list[Span], parent: Span) -> list[Span]:
    return [span for span in spans if span.parent_id == parent.span_id]


def assert_no_secret(spans: list[Span], *secrets_: str) -> None:
    for span in spans:
        values = [*span.attributes.values(), *(v for event in span.event_attributes for v in event.values())]
        for value in values:
            for secret in secrets_:
                assert secret not in str(value), (span.name, value)


def test_login_span_tree_under_the_callers_trace(traced, receiver, metrics_port) -> None:
    before = scrape(metrics_port)
    login = new_login("traced")
    header, trace_id, parent_id = traceparent()
    with grpc.insecure_channel(traced.address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        auth.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
        tokens = auth.Login(
            auth_pb2.LoginRequest(login=login, password=STRONG_PASSWORD), metadata=(("traceparent", header),)
        )

    def complete(spans: list[Span]) -> bool:
        mine = in_trace(spans, trace_id)
        root = server_span(mine, "/identity.v1.AuthService/Login")
        return root is not None and any(s.name == "bcrypt.verify" for s in mine)

    spans = in_trace(receiver.wait_for(complete, "the Login trace"), trace_id)
    root = server_span(spans, "/identity.v1.AuthService/Login")
    assert root is not None
    assert root.parent_id == parent_id  # the caller's span
    assert root.service == "identity"
    assert root.attributes["rpc.grpc.status_code"] == 0
    below = children(spans, root)
    assert {s.name for s in below} >= {"bcrypt.verify"}
    databases = {s.attributes.get("db.system") for s in below if s.kind == CLIENT_KIND}
    assert {"postgresql", "redis"} <= databases
    bcrypt_span = next(s for s in below if s.name == "bcrypt.verify")
    assert bcrypt_span.attributes["bcrypt.cost"] == 4
    assert_no_secret(spans, STRONG_PASSWORD, login, tokens.access_token, tokens.refresh_token)

    # The same call is on the metrics.
    assert delta(scrape(metrics_port), before, "identity_logins_total", kind="login", outcome="success") == 1

    # Every log line of the call carries its trace id.
    call_lines = [line for line in traced.log_lines() if line.get("rpc") == "Login" and line.get("trace_id")]
    assert call_lines and all(line["trace_id"] == trace_id for line in call_lines)


def test_a_failed_call_has_its_status_on_the_span(traced, receiver) -> None:
    header, trace_id, _ = traceparent()
    with grpc.insecure_channel(traced.address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        with pytest.raises(grpc.RpcError):
            auth.Login(
                auth_pb2.LoginRequest(login=new_login(), password="some wrong password"),
                metadata=(("traceparent", header),),
            )
    spans = receiver.wait_for(
        lambda spans: server_span(in_trace(spans, trace_id), "/identity.v1.AuthService/Login") is not None,
        "the failed Login",
    )
    root = server_span(in_trace(spans, trace_id), "/identity.v1.AuthService/Login")
    assert root is not None
    assert root.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert root.status_code == 2  # STATUS_CODE_ERROR
    assert_no_secret(in_trace(spans, trace_id), "some wrong password")


def test_check_permission_span_tree(traced, receiver, database_url) -> None:
    key = identity(database_url, "service-keys", "create", f"tracing-{secrets.token_hex(3)}").strip()
    with grpc.insecure_channel(traced.address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        rbac = rbac_pb2_grpc.RbacServiceStub(channel)
        user = auth.Register(auth_pb2.RegisterRequest(login=new_login(), password=STRONG_PASSWORD)).user
        check = rbac_pb2.CheckPermissionRequest(
            subject=rbac_pb2.Subject(user_id=user.id), permission="catalog.films.read"
        )
        cold_header, cold_trace, _ = traceparent()
        warm_header, warm_trace, _ = traceparent()
        rbac.CheckPermission(check, metadata=(*bearer(key), ("traceparent", cold_header)))
        rbac.CheckPermission(check, metadata=(*bearer(key), ("traceparent", warm_header)))

    name = "/identity.v1.RbacService/CheckPermission"
    spans = receiver.wait_for(
        lambda spans: all(server_span(in_trace(spans, t), name) for t in (cold_trace, warm_trace)),
        "both CheckPermission traces",
    )
    cold = in_trace(spans, cold_trace)
    cold_root = server_span(cold, name)
    assert cold_root is not None
    # The first check reads the key and the user's grants from PostgreSQL...
    cold_queries = [s for s in children(cold, cold_root) if s.attributes.get("db.system") == "postgresql"]
    assert cold_queries
    # ...the second is answered from memory: no child span at all.
    warm = in_trace(spans, warm_trace)
    warm_root = server_span(warm, name)
    assert warm_root is not None
    assert children(warm, warm_root) == []
    assert_no_secret(spans, key, key.removeprefix("sk_"))


def test_traceparent_through_envoy_with_envoys_own_span(traced, receiver, tmp_path) -> None:
    port = free_port()
    log = (tmp_path / "envoy.log").open("wb")
    process = subprocess.Popen(
        [
            str(BIN / "identity"),
            "gateway",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            traced.address,
            "--otlp-endpoint",
            receiver.endpoint,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError("envoy exited early")
            try:
                return http("GET", base + "/v1/auth/jwks")[0] == 200
            except OSError:
                return False

        wait_for(ready, "envoy to answer")
        login = new_login("envoy")
        header, trace_id, parent_id = traceparent()
        status, _, _ = http("POST", base + "/v1/auth/register", {"login": login, "password": STRONG_PASSWORD})
        assert status == 200
        status, body, _ = http(
            "POST",
            base + "/v1/auth/login",
            {"login": login, "password": STRONG_PASSWORD},
            headers={"traceparent": header},
        )
        assert status == 200

        def complete(spans: list[Span]) -> bool:
            mine = in_trace(spans, trace_id)
            return any(s.service == "identity-gateway" for s in mine) and (
                server_span(mine, "/identity.v1.AuthService/Login") is not None
            )

        # Envoy exports its spans in batches (every 5 s by default).
        spans = in_trace(receiver.wait_for(complete, "Envoy's and the server's spans", timeout=30), trace_id)
        envoy_spans = [s for s in spans if s.service == "identity-gateway"]
        envoy_ids = {s.span_id for s in envoy_spans}
        # Envoy's span continues the caller's trace...
        assert any(s.parent_id == parent_id for s in envoy_spans)
        # ...and the server's span is Envoy's child.
        root = server_span(spans, "/identity.v1.AuthService/Login")
        assert root is not None and root.parent_id in envoy_ids
        assert_no_secret(spans, STRONG_PASSWORD, login, body["access_token"], body["refresh_token"])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
