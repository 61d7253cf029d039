"""OpenTelemetry traces: a span per RPC (opentelemetry-instrumentation-grpc), child
spans for PostgreSQL (-psycopg, which wraps psycopg's async cursors too) and Redis
(-redis, which wraps redis.asyncio), and for bcrypt (ours: PasswordHasher reports
through the Observer). Exported over OTLP/gRPC.

What no span carries: the psycopg instrumentation records statements with their
placeholders and never the parameters; the Redis one records the command name and
a `?` per argument (keys hold logins); the RPC span has the method, peer address
and status code, never metadata or a message."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

import grpc
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from identity.domain.observer import NoopObserver


def parse_endpoint(endpoint: str) -> tuple[str, int, bool]:
    """(host, port, insecure) of an OTLP/gRPC endpoint: http:// is plaintext, https:// TLS."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"OTLP endpoint must be http://HOST:PORT or https://HOST:PORT, got {endpoint!r}")
    return parts.hostname, parts.port or 4317, parts.scheme == "http"


class CallsOnly(Sampler):
    """Root spans only for calls: the lease renewals, health pings and key reloads that
    run between calls would otherwise each start a trace of their own. A span with a
    parent follows the parent's decision (ParentBased), so a caller's unsampled
    `traceparent` is respected."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.SERVER:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "CallsOnly"


class Tracing:
    """The process's tracer provider and instrumentations, set up once at start-up,
    before the PostgreSQL pool opens (the psycopg instrumentation wraps `connect`)."""

    def __init__(self, endpoint: str) -> None:
        _, _, insecure = parse_endpoint(endpoint)
        resource = Resource.create(
            {
                "service.name": os.environ.get("OTEL_SERVICE_NAME", "identity"),
                "service.instance.id": f"{os.uname().nodename}:{os.getpid()}",
            }
        )
        # OTEL_TRACES_SAMPLER, when set, is the operator's choice; the SDK reads it.
        sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else ParentBased(root=CallsOnly())
        self.provider = TracerProvider(resource=resource, sampler=sampler)
        # OTEL_BSP_* (batch size, delay) are read by the processor itself.
        self.provider.add_span_processor(
            # A short export timeout: an unreachable collector must not hold up a shutdown.
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=insecure, timeout=5))
        )
        trace.set_tracer_provider(self.provider)
        PsycopgInstrumentor().instrument(tracer_provider=self.provider)
        RedisInstrumentor().instrument(tracer_provider=self.provider)
        self.tracer = self.provider.get_tracer("identity")

    def server_interceptor(self) -> grpc.aio.ServerInterceptor:
        # Health probes and reflection are not calls anyone wants a trace of.
        interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=self.provider, filter_=filters.negate(filters.service_prefix("grpc."))
        )
        return interceptor

    def shutdown(self) -> None:
        # Flushes what is still batched.
        self.provider.shutdown()


class TracingObserver(NoopObserver):
    """bcrypt spans, and the status code on the RPC span: our error edge answers with
    `abort_with_status`, which the gRPC instrumentation does not see."""

    def __init__(self, tracer: trace.Tracer, rounds: int) -> None:
        self._tracer = tracer
        self._rounds = rounds

    def rpc_done(self, service: str, method: str, code: str, seconds: float) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        status = grpc.StatusCode[code]
        span.set_attribute("rpc.grpc.status_code", status.value[0])
        if status is not grpc.StatusCode.OK:
            span.set_status(Status(StatusCode.ERROR, code))

    @contextlib.contextmanager
    def bcrypt(self, operation: str) -> Iterator[None]:
        with self._tracer.start_as_current_span(
            f"bcrypt.{operation}", attributes={"bcrypt.cost": self._rounds}
        ):
            yield
